"""The side table of local features is memory-mapped, not read whole (indexer/folder/features.py): reading it
decodes nothing, the verifier's processes map it themselves and are sent ids, not features, and every verdict is
the one of the whole-table path.  A Parquet table of versions before is still read and is replaced at the next
write; a table replaced while processes judge is never mixed with the one the pairs were chosen from."""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgsearch.indexer.folder import features as table_module
from imgsearch.indexer.folder.features import (
    FEATURES_FILE,
    LEGACY_FILE,
    map_features,
    read_features,
    update_features,
    write_features,
)
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.inputs.local_features import LocalFeatures
from imgsearch.search.duplicates import parallel
from imgsearch.search.duplicates.keypoints import KeypointMatcher
from imgsearch.search.duplicates.verifier import compare
from imgsearch.search.engine import SearchEngine


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(0, 40))
        yield (i * 3 + 1, f"{i:064x}", LocalFeatures(rng.random((k, 2), np.float32) * 64,
                                                     rng.integers(0, 256, (k, 32), np.uint8), (640, 480),
                                                     rng.integers(0, 256, (48, 64, 3), np.uint8)))


def _same(a: LocalFeatures, b: LocalFeatures) -> bool:
    return (a.size == b.size and np.array_equal(a.points, b.points) and np.array_equal(a.descriptors, b.descriptors)
            and np.array_equal(a.thumb, b.thumb))


def test_reading_the_table_decodes_none_of_its_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(table_module, "BATCH", 300)  # several record batches: rows found across chunks
    rows = list(_rows(2000))
    size = write_features(tmp_path, iter(rows))  # any iterable, written a batch at a time
    before = pa.total_allocated_bytes()
    stored = read_features(tmp_path)
    allocated = pa.total_allocated_bytes() - before
    assert stored.mapped and allocated < size / 100, (allocated, size)  # views of the file's pages, nothing copied
    assert len(stored) == len(rows) and sorted(stored) == [r[0] for r in rows]
    for row_id, sha, f in rows[::7] + rows[-3:]:
        assert stored.sha256(row_id) == sha and _same(stored[row_id][1], f)
    assert 2 not in stored and 10**9 not in stored
    with pytest.raises(KeyError):
        stored[2]


def test_a_parquet_table_of_versions_before_is_read_and_replaced_at_the_next_write(tmp_path):
    rows = list(_rows(50))
    write_features(tmp_path, rows)
    table = pa.ipc.open_file(str(tmp_path / FEATURES_FILE)).read_all()
    (tmp_path / FEATURES_FILE).unlink()
    pq.write_table(table, tmp_path / LEGACY_FILE)  # what versions before wrote
    legacy = read_features(tmp_path)
    assert not legacy.mapped and all(_same(legacy[i][1], f) for i, _, f in rows)
    assert update_features(tmp_path, [], removed=[rows[0][0]]) is not None
    assert not (tmp_path / LEGACY_FILE).exists()
    mapped = read_features(tmp_path)
    assert mapped.mapped and sorted(mapped) == [r[0] for r in rows[1:]]
    assert all(_same(mapped[i][1], f) for i, _, f in rows[1:])
    assert update_features(tmp_path, [], removed=[10**9]) is None  # nothing to drop: not written again


def test_a_table_replaced_meanwhile_is_not_mapped_by_the_workers(tmp_path):
    write_features(tmp_path, _rows(20))
    first = read_features(tmp_path)
    assert map_features(first.path, first.identity).identity == first.identity
    update_features(tmp_path, list(_rows(1, seed=5)))  # indexing replaced it (atomically: a new file)
    with pytest.raises(IndexFormatError, match="replaced"):
        map_features(first.path, first.identity)


@pytest.fixture
def engine(dup_index, tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(dup_index[0], folder)
    return SearchEngine.open(folder)


def test_processes_read_stored_images_from_the_map_and_judge_as_the_whole_table_does(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    monkeypatch.setattr(parallel, "CHUNK", 4)
    matcher = KeypointMatcher(engine, workers=2)
    ids = sorted(engine.ids)
    pairs = list(itertools.combinations(ids, 2))
    assert all(matcher.stored(i) for i in ids)
    whole = read_features(engine.store.root)
    whole = {i: whole[i][1] for i in ids}  # the whole-table path: every image's features held and sent
    expected = [compare(whole[a], whole[b]) for a, b in pairs]
    asked = []

    def counted(i):
        asked.append(i)
        return matcher.features(i)

    table = matcher._table()
    mapped = (table.path, table.identity, matcher._current)
    assert parallel.compare_pairs(pairs, counted, 2, None, mapped) == expected
    assert asked == []  # no stored image's features made or pickled here
    one_not = (table.path, table.identity, matcher._current[matcher._current != ids[0]])  # e.g. a changed file
    assert parallel.compare_pairs(pairs, counted, 2, None, one_not) == expected
    assert set(asked) == {ids[0]}  # only what the table cannot give is sent
    assert parallel.compare_pairs(pairs, whole.get, 2) == expected  # and without the map: sent, as before


def test_prepare_judges_from_the_map_with_the_whole_table_verdicts(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    pairs = list(itertools.combinations(sorted(engine.ids), 2))
    mapped = KeypointMatcher(engine, workers=2)
    mapped.prepare(pairs)
    assert mapped._found == {} and mapped.from_files == 0  # nothing kept per image: views made when asked
    legacy_dir = engine.store.root
    table = pa.ipc.open_file(str(legacy_dir / FEATURES_FILE)).read_all()
    os.unlink(legacy_dir / FEATURES_FILE)
    pq.write_table(table, legacy_dir / LEGACY_FILE)  # the whole-table path: read whole, features sent
    whole = KeypointMatcher(SearchEngine.open(legacy_dir), workers=2)
    whole.prepare(pairs)
    assert not whole._table().mapped
    assert [mapped.evidence(a, b) for a, b in pairs] == [whole.evidence(a, b) for a, b in pairs]


def test_pairs_prepared_in_their_order_are_the_evidence_asked_later_in_that_order(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    ids = sorted(engine.ids)
    ordered = [(b, a) for a, b in itertools.combinations(ids, 2)]  # the keeper after the member by id
    prepared = KeypointMatcher(engine, workers=2)
    prepared.prepare(ordered, ordered=True)
    alone = KeypointMatcher(engine, workers=1)
    computed = []
    monkeypatch.setattr("imgsearch.search.duplicates.keypoints.compare",
                        lambda *a: computed.append(1) or compare(*a))
    assert [prepared.evidence(k, m) for k, m in ordered] == [compare(alone.features(k), alone.features(m))
                                                             for k, m in ordered]
    assert computed == [] and len(prepared._evidence) == len(ordered)  # none judged again, one by one
