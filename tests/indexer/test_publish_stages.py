"""The publishing stages alone: plan, check before any build, and the composed publish_index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsearch.indexer import ann
from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError, Row
from imgsearch.indexer.publish.check import check_shards, duplicate_ids
from imgsearch.indexer.publish.plan import plan_build
from imgsearch.indexer.publish.version import publish_index
from imgsearch.indexer.synthetic import ClusteredEmbeddings

D = 16
GEN = ClusteredEmbeddings(D, clusters=20, latent=8, seed=5)


def folder(path, id_ranges, shard_rows=None):
    """An index folder (nothing built) with one shard per id range."""
    store = EmbeddingStore(path)
    store.root.mkdir(parents=True, exist_ok=True)
    manifest = {"backbone": {"name": "synthetic", "weights": None, "input_size": 0, "preprocessing": "",
                             "resize": ""},
                "dim": D, "metric": "cosine", "count": 0, "shards": [], "index_file": None, "generation": 0}
    shards = []
    for seed, ids in enumerate(id_ranges):
        vectors = GEN.sample(len(ids), seed)
        shards.append(store.write_shard([Row(int(i), f"/img/{i}.png", "", 8, 8, f"{i:064x}", v)
                                         for i, v in zip(ids, vectors)], D))
    return store, manifest, shards


def test_duplicate_ids_across_shards_fail_before_anything_is_trained(tmp_path):
    store, manifest, shards = folder(tmp_path / "idx", [range(0, 600), range(600, 1200), range(1100, 1700)])
    with pytest.raises(IndexFormatError, match=r"100 ids \(1100, 1101, .*\) are stored more than once, "
                                               r"in part-00001.parquet, part-00002.parquet") as err:
        publish_index(store, manifest, shards, options=ann.AnnOptions(index_type="IVF16,Flat"))
    assert "part-00000.parquet" not in str(err.value)
    # nothing was trained or written: the check came first
    assert not list(store.root.glob("*.faiss")) and not store.exists()
    assert check_shards(store, shards[:2]).tolist() == list(range(1200))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(st.integers(0, 60), st.integers(-3, 2**62)), max_size=12), max_size=6))
def test_duplicate_ids_are_found_within_and_across_shards_dense_or_not(shards):
    # dense ids (the ledger's) are marked a byte per id shard by shard; sparse or negative ones (a damaged
    # shard) are sorted: either way exactly the ids stored more than once are named
    ids = np.array([i for shard in shards for i in shard], np.int64)
    unique, times = np.unique(ids, return_counts=True)
    np.testing.assert_array_equal(duplicate_ids(ids, [len(s) for s in shards]), unique[times > 1])


def test_plan_updates_an_unchanged_index_type_and_rebuild_says_otherwise(tmp_path):
    store, manifest, shards = folder(tmp_path / "idx", [range(0, 500), range(500, 1000)])
    first = plan_build(manifest, 1000, ann.AnnOptions(index_type="IVF16,Flat"))
    assert (first.factory, first.update, first.d) == ("IVF16,Flat", False, D)  # nothing to update yet
    manifest = publish_index(store, manifest, shards, options=ann.AnnOptions(index_type="IVF16,Flat"))
    grown = plan_build(manifest, 1100)  # options as last time
    assert (grown.factory, grown.update) == ("IVF16,Flat", True)
    assert grown.trained_file == manifest["ann"]["trained_file"]
    assert not plan_build(manifest, 1100, rebuild=True).update
    assert plan_build(manifest, 1100, ann.AnnOptions(index_type="Flat")).factory == "Flat"


def test_published_version_is_the_composed_stages(tmp_path):
    store, manifest, shards = folder(tmp_path / "idx", [range(0, 700), range(700, 1000)])
    published = publish_index(store, manifest, shards, options=ann.AnnOptions(index_type="IVF16,Flat"))
    assert published == store.read_manifest()  # the manifest is replaced last, with everything in it
    assert (published["count"], published["next_id"], published["search_dim"]) == (1000, 1000, D)
    assert published["shard_high"] == shards[-1] and published["generation"] == 1
    index = store.read_index(published["index_file"])
    assert index.ntotal == 1000
    _, found = index.search(GEN.sample(1, 0), 1)
    assert 0 <= found[0, 0] < 1000
    assert np.isclose(published["ann"]["tuning"]["target_recall"], ann.AnnOptions().target_recall)
