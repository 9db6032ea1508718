"""Shard compaction and the id -> shard map (issue 19): many incremental runs, few shards, one shard per lookup."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.publish import compact
from imgsearch.indexer.run.index_vectors import index_vectors
from imgsearch.search.engine import SearchEngine

DIM = 16
SHARD_SIZE = 64


def _run(tmp_path, index_dir, first: int, n: int) -> None:
    """One incremental run adding rows first..first+n-1."""
    v = np.random.default_rng(first).normal(size=(n, DIM)).astype(np.float32)
    src = tmp_path / f"v{first}.parquet"
    pq.write_table(pa.table({"path": [f"/x/{i}" for i in range(first, first + n)],
                             "embedding": [list(map(float, r)) for r in v]}), src)
    index_vectors(src, index_dir, dataclasses.replace(IndexConfig(progress=False), shard_size=SHARD_SIZE))


def _rows(index_dir) -> tuple[list, np.ndarray]:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["id", "path", "embedding"])
    order = np.argsort(table.column("id").to_numpy())
    return [table.column("path").to_pylist()[i] for i in order], np.asarray(
        table.column("embedding").to_pylist(), np.float32)[order]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 100), max_size=40))
def test_plan_merges_only_runs_of_small_shards_and_never_past_the_shard_size(rows):
    groups = compact.plan_compaction(rows, SHARD_SIZE)
    small = [n < compact.SMALL * SHARD_SIZE for n in rows]
    if sum(small) < compact.COMPACT_AT:
        assert groups == []
    last = 0
    for start, stop in groups:
        assert last <= start < stop - 1  # in order, disjoint, two shards or more
        assert all(small[start:stop]) and sum(rows[start:stop]) <= SHARD_SIZE
        last = stop
    # nothing mergeable is left: no two neighbouring small shards outside a group fit together
    grouped = {i for a, b in groups for i in range(a, b)}
    for i in range(len(rows) - 1):
        if sum(small) >= compact.COMPACT_AT and small[i] and small[i + 1] and not ({i, i + 1} & grouped):
            assert rows[i] + rows[i + 1] > SHARD_SIZE


def test_many_incremental_runs_keep_few_shards_and_the_same_rows(tmp_path):
    index_dir = tmp_path / "idx"
    first = 0
    for run in range(20):
        _run(tmp_path, index_dir, first, 3 + run % 4)
        first += 3 + run % 4
    manifest = EmbeddingStore(index_dir).read_manifest()
    assert len(manifest["shards"]) < compact.COMPACT_AT + 2  # 20 runs, each with its shard
    paths, vectors = _rows(index_dir)
    assert paths == [f"/x/{i}" for i in range(first)]  # ids in listing order, none lost or repeated
    assert verify_index(index_dir).ok

    engine = SearchEngine.open(index_dir)
    for i in (0, first // 2, first - 1):
        np.testing.assert_array_equal(engine.vector(i), vectors[i])
        assert engine.search_vector(vectors[i], k=1)[0].id == i  # the FAISS index still names the rows


def test_a_lookup_by_id_reads_the_one_shard_that_holds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(compact, "COMPACT_AT", 10**6)  # keep every run's shard
    index_dir = tmp_path / "idx"
    for run in range(12):
        _run(tmp_path, index_dir, run * 5, 5)
    engine = SearchEngine.open(index_dir)
    assert len(engine.manifest["shards"]) == 12
    read = []
    original = EmbeddingStore.read_embedding

    def spy(self, shards, row_id):
        read.append(list(shards))
        return original(self, shards, row_id)

    monkeypatch.setattr(EmbeddingStore, "read_embedding", spy)
    _, vectors = _rows(index_dir)
    for i in range(60):
        np.testing.assert_array_equal(engine.vector(i), vectors[i])
    assert [len(s) for s in read] == [1] * 60 and read[0] != read[-1]
    with pytest.raises(KeyError):
        engine.vector(60)


def test_a_reader_of_the_version_before_compaction_still_finds_its_shards(tmp_path):
    index_dir = tmp_path / "idx"
    for run in range(compact.COMPACT_AT - 1):
        _run(tmp_path, index_dir, run * 4, 4)
    before = SearchEngine.open(index_dir)
    _run(tmp_path, index_dir, 100, 4)  # the run that compacts
    assert len(EmbeddingStore(index_dir).read_manifest()["shards"]) < len(before.manifest["shards"])
    for i in range(0, (compact.COMPACT_AT - 1) * 4, 5):
        assert before.vector(i).shape == (DIM,)  # retired, not yet deleted
