"""The serving engine's metadata, columnar (search/catalog.py): id -> row, labels, paths read from the shards.

Real index folders: synthetic vectors (indexer/synthetic.py) in real Parquet
shards, a real FAISS index, real removals and compaction; every answer is
checked against the shards read back whole.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from imgsearch.indexer.ann import AnnOptions
from imgsearch.indexer.folder.shard_columns import base_schema
from imgsearch.indexer.folder.store import EmbeddingStore, Row
from imgsearch.indexer.folder.texts import text_array, texts_of
from imgsearch.indexer.publish.compact import compact_shards
from imgsearch.indexer.publish.version import publish_index
from imgsearch.indexer.run.remove import remove_images
from imgsearch.indexer.synthetic import ClusteredEmbeddings, synthetic_manifest
from imgsearch.search import catalog as catalog_module
from imgsearch.search.engine import SearchEngine, UnknownIdError

D = 8
GEN = ClusteredEmbeddings(D, clusters=20, latent=4, seed=5)
# names of any bytes: not UTF-8, a leading NUL-escape look-alike, non-ASCII, a newline
ODD = ["caf\udce9.jpg", "\x00raw.jpg", "ümlaut ✓.png", "line\nbreak.jpg", "100%.jpg"]


def _folder(path, id_runs: list[range], labels=("cat", "dog", "")) -> EmbeddingStore:
    """A published folder: one shard per run of ids (in that order), odd names and labels among them."""
    store = EmbeddingStore(path)
    store.root.mkdir(parents=True)
    shards = []
    for s, run in enumerate(id_runs):
        vectors = GEN.sample(len(run), seed=s)
        rows = [Row(i, f"/img/{s}/{ODD[i % len(ODD)]}{i}", (list(labels) + ODD)[i % (len(labels) + len(ODD))],
                    8, 8, f"{i:064x}", v) for i, v in zip(run, vectors)]
        shards.append(store.write_shard(rows, D))
    publish_index(store, synthetic_manifest(D), shards, options=AnnOptions(index_type="Flat"))
    return store


def _truth(store: EmbeddingStore) -> dict[int, tuple[int, str, str]]:
    """id -> (row, path, label), from the version's shards read whole."""
    table = store.read_table(store.read_manifest()["shards"], ["id", "path", "label"])
    return {i: (r, p, lab) for r, (i, p, lab) in enumerate(zip(table.column("id").to_pylist(),
                                                               texts_of(table, "path"), texts_of(table, "label")))}


def _check(engine: SearchEngine, truth: dict) -> None:
    assert engine.ids.tolist() == list(truth)
    ids = np.array(list(truth), np.int64)
    rows = engine.catalog.rows(ids[::-1])  # many at once, in any order
    assert rows.tolist() == [truth[i][0] for i in ids[::-1].tolist()]
    for i in ids[::7].tolist():
        hit = engine.get(i)
        assert (hit.id, hit.path, hit.label) == (i, truth[i][1], truth[i][2])
    many = engine.get_many(ids[::-3])
    assert [(h.id, h.path, h.label) for h in many] == [(i, *truth[i][1:]) for i in ids[::-3].tolist()]
    assert engine.labels() == sorted({lab for _, _, lab in truth.values()}) == engine.filtered.columns().labels()
    hits = engine.search_id(int(ids[3]), k=5)
    assert [(h.path, h.label) for h in hits] == [truth[h.id][1:] for h in hits]


def test_id_to_row_over_shards_after_removal_and_compaction(tmp_path):
    store = _folder(tmp_path / "ix", [range(s * 200, s * 200 + (10 if s == 6 else 190)) for s in range(10)])
    engine = SearchEngine.open(store.root)
    before = _truth(store)
    _check(engine, before)
    assert engine.catalog._order is None  # increasing ids are searched as they are: no order array

    gone = list(range(5, 600, 3)) + [1200, 1205] + list(range(1500, 1990, 2))
    remove_images(store.root, gone)
    removed = SearchEngine.open(store.root)
    truth = _truth(store)
    assert not set(gone) & set(truth) and len(removed) == len(truth) == len(before) - len(set(gone) & set(before))
    _check(removed, truth)
    for i in gone[::25]:
        with pytest.raises(UnknownIdError):
            removed.get(i)
        with pytest.raises(UnknownIdError):
            removed.vector(i)

    compact_shards(store, store.read_manifest(), shard_size=4096)  # 10 small shards: merged into one
    assert len(store.read_manifest()["shards"]) == 1
    compacted = SearchEngine.open(store.root)
    assert compacted.manifest["shards"] != removed.manifest["shards"]
    _check(compacted, truth)
    assert np.array_equal(compacted.vector(1201), removed.vector(1201))


def test_ids_out_of_order_and_unknown_ids(tmp_path):
    # a later shard holding lower ids (as after a rebuild from mixed shards): the catalog keeps an order
    store = _folder(tmp_path / "ix", [range(5000, 5600), range(40, 900, 2), range(9000, 9300)])
    engine = SearchEngine.open(store.root)
    truth = _truth(store)
    _check(engine, truth)
    assert engine.catalog._order is not None and engine.catalog._order.dtype == np.int32
    unknown = [-1, 0, 41, 899, 4999, 5600, 9300, 2**62, 2**63 - 1]
    assert engine.catalog.rows(unknown).tolist() == [-1] * len(unknown)
    assert engine.catalog.rows(np.array([2**64 - 1, 5001], np.uint64)).tolist() == [-1, truth[5001][0]]
    assert engine.catalog.rows([2**70, 42]).tolist() == [-1, truth[42][0]]  # beyond int64: not an id
    for bad in (41, 2**70, -3):
        with pytest.raises(UnknownIdError, match=f"no image with id {bad} in the index"):
            engine.get(bad)
    with pytest.raises(UnknownIdError, match="id 41 "):
        engine.get_many([40, 41, 42])
    with pytest.raises(UnknownIdError):
        engine.search_id(41)


def test_paths_come_from_a_bounded_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "CACHED_GROUPS", 2)
    store = _folder(tmp_path / "ix", [range(0, 2000)])  # 8 row groups of 256
    catalog = SearchEngine.open(store.root).catalog
    truth = _truth(store)
    reads = []
    real = catalog._group_paths.__func__

    def counting(self, g):
        if g not in self._paths:
            reads.append(g)
        return real(self, g)

    monkeypatch.setattr(catalog_module.Catalog, "_group_paths", counting)
    rows = np.arange(0, 2000, 5)
    assert catalog.paths(rows) == [truth[i][1] for i in rows.tolist()]
    assert sorted(reads) == list(range(8))  # each row group read once for all its rows
    reads.clear()
    assert catalog.path(1999) == truth[1999][1] and catalog.path(1800) == truth[1800][1] and not reads
    assert catalog.path(3) == truth[3][1] and reads == [0] and len(catalog._paths) == 2


def test_engine_holds_no_python_object_per_image(tmp_path):
    """200,000 rows: what opening keeps allocated (tracemalloc sees numpy's and Python's memory, not FAISS's)
    stays under 40 bytes per image; a dict from id to row and lists of paths and labels cost over 200."""
    n, d = 200_000, 4
    store = EmbeddingStore(tmp_path / "ix")
    store.root.mkdir()
    vectors = ClusteredEmbeddings(d, clusters=10, latent=2, seed=1).sample(n, seed=2)
    ids = np.arange(n, dtype=np.int64) * 3 + 11  # not dense
    table = pa.table({
        "id": ids, "path": text_array(f"photos/2024/{i:09d}.jpg" for i in ids.tolist()),
        "label": text_array([f"class{i % 97}" for i in range(n)]), "width": pa.array(np.full(n, 8), pa.int32()),
        "height": pa.array(np.full(n, 8), pa.int32()), "sha256": [f"{i:064x}" for i in ids.tolist()],
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), d),
    }, schema=base_schema(d))
    del vectors
    shards = [store.write_table(table.slice(s, 50_000)) for s in range(0, n, 50_000)]
    publish_index(store, synthetic_manifest(d), shards, options=AnnOptions(index_type="Flat"))
    del table

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = SearchEngine.open(store.root)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(engine) == n
    assert held / n < 40, f"opening keeps {held / n:.0f} bytes per image"
    assert engine.catalog.nbytes / n < 12
    hit = engine.get(int(ids[123_456]))
    assert (hit.path, hit.label) == (f"photos/2024/{ids[123_456]:09d}.jpg", f"class{123_456 % 97}")
