"""On-disk IVF indexes: partial indexes filled from the trained one (here or by Spark executors), their
inverted lists merged into one ``.ivfdata`` file that the engine memory-maps.

Synthetic vectors (indexer/synthetic.py) in real Parquet shards, real FAISS,
a real local[2] Spark session (the session fixture), real ``imgsearch``
processes.  Every comparison is against an in-RAM index filled from the same
trained file, on fresh queries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from imgsearch.indexer import ann
from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.ondisk_lists import on_disk_lists
from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError, Row, file_sha256
from imgsearch.indexer.publish import ondisk
from imgsearch.indexer.publish.build import build_index
from imgsearch.indexer.publish.check import check_shards
from imgsearch.indexer.publish.plan import plan_build, same_options
from imgsearch.indexer.publish.tune import tune_index
from imgsearch.indexer.publish.version import publish_index
from imgsearch.indexer.synthetic import ClusteredEmbeddings
from imgsearch.search.engine import SearchEngine

D, N, SHARD = 32, 12_000, 2_000  # six shards
FACTORY = "IVF64,SQ8"  # plain inverted lists: can be on disk
GROUP_ROWS = 4_500  # three partial indexes for the six shards
GEN = ClusteredEmbeddings(D, clusters=100, latent=8, seed=7)
NPROBE = 8
IMGSEARCH = Path(sys.executable).parent / "imgsearch"


def write_shard(store, start, n, seed):
    vectors = GEN.sample(n, seed)
    return store.write_shard([Row(start + j, f"/img/{start + j}.png", "", 8, 8, f"{start + j:064x}", v)
                              for j, v in enumerate(vectors)], D)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Shards of N synthetic vectors and an unpublished manifest, written once; tests work on copies."""
    root = tmp_path_factory.mktemp("ondisk-source") / "index"
    store = EmbeddingStore(root)
    root.mkdir()
    for i, start in enumerate(range(0, N, SHARD)):
        write_shard(store, start, SHARD, seed=i)
    manifest = {"backbone": {"name": "synthetic", "weights": None, "input_size": 0, "preprocessing": "",
                             "resize": ""},
                "dim": D, "metric": "cosine", "count": 0, "shards": [], "index_file": None, "generation": 0}
    return root, manifest


@pytest.fixture
def folder(source, tmp_path, monkeypatch):
    """(store, manifest, shards) of a fresh copy of the source folder; partial indexes of GROUP_ROWS rows."""
    monkeypatch.setattr(ondisk, "GROUP_ROWS", GROUP_ROWS)
    root, manifest = source
    shutil.copytree(root, tmp_path / "index")
    store = EmbeddingStore(tmp_path / "index")
    return store, dict(manifest), store.completed_shards()


def queries(n=200):
    return GEN.sample(n, seed=10_000)  # fresh: none of them is indexed


def searched(index, k=10):
    ann.set_search_params(index, {"nprobe": NPROBE})
    return index.search(queries(), k)


def in_ram_from(store, manifest, shards, trained_file):
    """The reference: the trained file with every shard's vectors added in one in-RAM index."""
    index = store.read_index(trained_file)
    for name in shards:
        table = store.read_table([name], ["id", "embedding"])
        vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
        index.add_with_ids(vectors, table.column("id").to_numpy())
    return index


def assert_same_results(a, b):
    (da, ia), (db, ib) = searched(a), searched(b)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(da, db)


def publish_on_disk(store, manifest, shards, mode="always", **kwargs):
    return publish_index(store, manifest, shards, options=ann.AnnOptions(index_type=FACTORY, on_disk=mode), **kwargs)


def imgsearch(*args):
    return subprocess.run([str(IMGSEARCH), *args], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- the build
def test_local_on_disk_build_equals_in_ram_build_from_the_same_trained_file(folder):
    store, manifest, shards = folder
    ids = check_shards(store, shards)
    plan = plan_build(manifest, len(ids), ann.AnnOptions(index_type=FACTORY))
    assert not plan.on_disk  # fits the default budget: in RAM unless asked
    in_ram, trained_file, _ = build_index(store, manifest, shards, ids, plan)
    on_disk, trained_again, _ = build_index(store, manifest, shards, ids,
                                            dataclasses.replace(plan, on_disk=True, trained_file=trained_file))
    assert trained_again == trained_file  # filled from it, not retrained
    assert on_disk_lists(in_ram) is None and on_disk_lists(on_disk).filename == "index-000001.ivfdata"
    assert on_disk.ntotal == in_ram.ntotal == N
    assert (store.root / "index-000001.ivfdata").stat().st_size > N * D  # SQ8: a byte a dimension + the ids
    assert not list(store.root.glob(".ondisk-partials-*"))  # the partials are gone after the merge
    assert_same_results(in_ram, on_disk)
    tunings = [tune_index(store, manifest, shards, ids, index, 0.95) for index in (in_ram, on_disk)]
    assert tunings[0].params == tunings[1].params and tunings[0].recall == tunings[1].recall


def test_spark_fill_equals_local_build_with_the_same_trained_state(folder, spark):
    from imgsearch.indexer.run.indexing import finish_index
    from imgsearch.indexer.spark.fill import SparkFill

    store, manifest, shards = folder
    filled = []

    class Counted(SparkFill):
        def __call__(self, *args):
            filled.extend(super().__call__(*args))
            return filled

    # "auto" on Spark: an index type that can be on disk is built on disk, by the executors; through the
    # indexing run's last step, as `index --engine spark` publishes
    # the driver never reads a shard's vectors: training sample, fill, tuning queries and their exact
    # neighbours are all read by the executors (Python workers of their own, which this patch does not reach);
    # nor does it train, merge the lists or tune on them: what grows with the set stays off the driver
    with pytest.MonkeyPatch.context() as patch:
        def refuse(*args, **kwargs):
            raise AssertionError("the driver read the shards' vectors, or trained, merged or tuned")

        patch.setattr("imgsearch.indexer.publish.shard_vectors.iter_vectors", refuse)
        patch.setattr("imgsearch.indexer.publish.build.iter_vectors", refuse)
        for step in ("imgsearch.indexer.ann.train", "imgsearch.indexer.ann.tune", "faiss.contrib.ondisk.merge_ondisk"):
            patch.setattr(step, refuse)
        published = finish_index(store, manifest, [], shards, set(), "spark", IndexConfig(index_type=FACTORY),
                                 fill=Counted(lambda: spark))
    assert published["ann"]["on_disk"] is True and published["ann"]["lists_file"] == "index-000001.ivfdata"
    assert len(filled) == 2 * spark.sparkContext.defaultParallelism  # partials spread over the executors
    engine = SearchEngine.open(store.root)
    reference = in_ram_from(store, published, shards, published["ann"]["trained_file"])
    assert_same_results(reference, engine.index)
    # and a local on-disk fill of the same trained state gives the same index
    ids = check_shards(store, shards)
    plan = dataclasses.replace(plan_build(published, len(ids), ann.AnnOptions(index_type=FACTORY)),
                               on_disk=True, trained_file=published["ann"]["trained_file"])
    local, _, _ = build_index(store, dict(published, generation=5), shards, ids, plan)
    assert_same_results(local, engine.index)
    # a later local run ("auto", fits in RAM) keeps it on disk rather than flipping with the engine
    later = publish_index(store, published, [*shards, write_shard(store, N, 500, seed=97)])
    assert later["ann"]["lists_file"] == "index-000002.ivfdata" and later["count"] == N + 500


def test_executors_pick_rows_and_find_exact_neighbours_as_the_driver_does(folder, spark):
    from imgsearch.indexer.publish.shard_vectors import exact_neighbours, pick_vectors
    from imgsearch.indexer.spark.fill import SparkFill

    store, manifest, shards = folder
    executors = SparkFill(lambda: spark)
    n = sum(store.shard_rows(shards))
    positions = np.sort(np.random.default_rng(3).choice(n, 700, replace=False))
    ids, vectors = executors.pick_vectors(store, shards, manifest, positions)
    want_ids, want_vectors = pick_vectors(store, shards, manifest, positions)
    assert np.array_equal(ids, want_ids) and np.array_equal(vectors, want_vectors)
    for graph in (False, True):
        assert np.array_equal(executors.exact_neighbours(store, shards, manifest, vectors[:50], ids[:50], graph),
                              exact_neighbours(store, shards, manifest, vectors[:50], ids[:50], graph))


def test_spark_stage_hands_its_executors_to_the_publish(spark):
    from imgsearch.indexer.spark.images import SparkStage
    from imgsearch.indexer.spark.fill import (
        SparkFill,
        _fill_partition,
        _run_partition,
        spread,
    )

    fill = SparkStage(IndexConfig(progress=False), spark).fill
    assert isinstance(fill, SparkFill) and fill.session() is spark
    assert spread([["a", "b", "c"], ["d"]], 3) == [["a", "b"], ["c"], ["d"]]
    assert spread([["a"], ["b"]], 8) == [["a"], ["b"]]  # never more runs than shards
    # an executor that does not see the folder fills nothing and says so: the driver fills that run
    unseen = _fill_partition("/nonexistent/index", {}, "trained-000001.faiss", "/nonexistent/work", iter([(3, ["a"])]))
    assert [(number, path) for number, path, _ in unseen] == [(3, None)]
    # nor does a step run on one executor (training, merging, tuning): the driver runs it
    assert [seen for seen, _, _ in _run_partition("/nonexistent/index", print, (), (), iter([0]))] == [False]


# ---------------------------------------------------------------- serving
def test_engine_serves_it_memory_mapped_read_only_from_a_moved_folder(folder, tmp_path):
    store, manifest, shards = folder
    published = publish_on_disk(store, manifest, shards)
    reference = in_ram_from(store, published, shards, published["ann"]["trained_file"])
    moved = tmp_path / "moved"
    os.rename(store.root, moved)  # the lists file is found beside the index, wherever the folder is
    engine = SearchEngine.open(moved)
    lists = on_disk_lists(engine.index)
    assert lists is not None and lists.read_only and lists.filename == str(moved / "index-000001.ivfdata")
    assert lists.prefetch_nthread == 0  # no threads started per query to read the lists ahead
    assert engine.device == "cpu"
    assert_same_results(reference, engine.index)
    hits = engine.search_vector(queries(1)[0], 5)
    assert len(hits) == 5 and all(0 <= h.id < N for h in hits)

    from imgsearch.web.app import create_app

    api_info = create_app({"INDEX_DIR": str(moved), "WARM_UP": False}).test_client().get("/api/info")
    assert api_info.status_code == 200 and api_info.get_json()["on_disk"] is True
    verified = imgsearch("verify", "--index", str(moved), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    info = imgsearch("info", "--index", str(moved))
    assert info.returncode == 0, info.stderr
    assert "on disk:    inverted lists in index-000001.ivfdata, memory-mapped, searched on CPU" in info.stdout


def test_an_on_disk_index_is_never_moved_to_a_gpu(folder, monkeypatch):
    store, manifest, shards = folder
    publish_on_disk(store, manifest, shards)
    index = SearchEngine.open(store.root).index

    def no_copy(*_):
        raise AssertionError("an on-disk index was copied to a GPU")

    monkeypatch.setattr("imgsearch.indexer.vectors.gpu_count", lambda: 1)  # the only mock: a GPU
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", no_copy)
    assert ann.to_gpu_if_available(index, "auto") == (index, "cpu")


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_lists_file_is_a_clear_error(folder, damage):
    store, manifest, shards = folder
    publish_on_disk(store, manifest, shards)
    lists = store.root / "index-000001.ivfdata"
    if damage == "truncated":
        os.truncate(lists, lists.stat().st_size // 2)
    else:
        lists.unlink()
    with pytest.raises(IndexFormatError, match="index-000001.ivfdata"):
        SearchEngine.open(store.root)
    # read past the manifest's size check too: the store refuses to map a short file (a crash on query)
    with pytest.raises(IndexFormatError, match="truncated" if damage == "truncated" else "missing"):
        store.read_index("index-000001.faiss", lists_file="index-000001.ivfdata")
    verified = imgsearch("verify", "--index", str(store.root))
    assert verified.returncode == 1 and "index-000001.ivfdata" in verified.stdout + verified.stderr
    assert "Traceback" not in verified.stderr
    if damage == "truncated":  # and --repair rebuilds it, on disk again
        repaired = imgsearch("verify", "--index", str(store.root), "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        engine = SearchEngine.open(store.root)
        assert engine.index.ntotal == N and on_disk_lists(engine.index) is not None


# ---------------------------------------------------------------- later versions
def test_incremental_run_and_removal_fill_new_files_and_leave_served_ones_alone(folder, monkeypatch):
    store, manifest, shards = folder
    monkeypatch.chdir(store.root)  # where FAISS alone would find the served lists file by its bare name
    first = publish_on_disk(store, manifest, shards)
    served_lists = store.root / "index-000001.ivfdata"
    served_sha = file_sha256(served_lists)

    added = write_shard(store, N, 1_000, seed=99)
    second = publish_index(store, first, [*shards, added])  # options as last time: on disk
    assert second["ann"]["lists_file"] == "index-000002.ivfdata" and second["count"] == N + 1_000
    assert second["ann"]["trained_file"] == first["ann"]["trained_file"]  # filled again, never retrained
    assert second["ann"]["tuning"] == first["ann"]["tuning"]  # +8 %: tuning kept, as for an updated index
    assert file_sha256(served_lists) == served_sha  # the version a server may still map is untouched
    engine = SearchEngine.open(store.root)
    assert_same_results(in_ram_from(store, second, [*shards, added], second["ann"]["trained_file"]), engine.index)

    removed = set(range(0, 2_500))
    kept, retired = store.rewrite_without(second["shards"], removed)
    third = publish_index(store, second, kept, retired)
    assert third["count"] == N - 1_500 and third["ann"]["lists_file"] == "index-000003.ivfdata"
    engine = SearchEngine.open(store.root)
    found = searched(engine.index, k=50)[1]
    assert not removed & set(found.ravel().tolist())
    assert_same_results(in_ram_from(store, third, kept, third["ann"]["trained_file"]), engine.index)
    # the first version's files go once no served version needs them; the previous version's stay
    names = {p.name for p in store.root.iterdir()}
    assert "index-000001.ivfdata" not in names and "index-000001.faiss" not in names
    assert {"index-000002.ivfdata", "index-000002.faiss", "index-000003.ivfdata"} <= names
    assert set(third["files"]) >= {"index-000003.faiss", "index-000003.ivfdata", third["ann"]["trained_file"]}


class Killed(Exception):
    pass


@pytest.mark.parametrize("when", ["after the partials", "before the manifest"])
def test_a_run_killed_after_writing_leaves_the_old_version_served(folder, monkeypatch, when):
    store, manifest, shards = folder
    first = publish_on_disk(store, manifest, shards)
    before = searched(SearchEngine.open(store.root).index)
    added = write_shard(store, N, 1_000, seed=98)
    if when == "after the partials":
        real = ondisk.local_fill

        def fill_then_die(*args):
            real(*args)
            assert list(store.root.glob(".ondisk-partials-*/partial-*.faiss"))
            raise Killed

        monkeypatch.setattr(ondisk, "local_fill", fill_then_die)
    else:
        def die(*_):
            assert (store.root / "index-000002.ivfdata").is_file() and (store.root / "index-000002.faiss").is_file()
            raise Killed

        monkeypatch.setattr("imgsearch.indexer.publish.version.rebuild_head_indexes", die)
    with pytest.raises(Killed):
        publish_index(store, first, [*shards, added])
    monkeypatch.undo()
    monkeypatch.setattr(ondisk, "GROUP_ROWS", GROUP_ROWS)
    assert store.read_manifest()["generation"] == 1
    after = searched(SearchEngine.open(store.root).index)
    np.testing.assert_array_equal(before[1], after[1])  # the old version, served as it was

    second = publish_index(store, store.read_manifest(), [*shards, added])  # the next run succeeds
    assert second["count"] == N + 1_000 and SearchEngine.open(store.root).index.ntotal == N + 1_000
    names = {p.name for p in store.root.iterdir()}
    assert not [n for n in names if n.startswith(".")]  # no partials, no temporary files left
    assert names == {"manifest.json", "shards", first["ann"]["trained_file"], "index-000001.faiss",
                     "index-000001.ivfdata", "index-000002.faiss", "index-000002.ivfdata"}


# ---------------------------------------------------------------- when it is used
@pytest.mark.parametrize("mode, factory, budget, distributed, expected", [
    ("auto", "IVF64,SQ8", 2**30, False, False),  # fits in RAM
    ("auto", "IVF64,SQ8", 2**10, False, True),  # does not
    ("auto", "IVF64,SQ8", 2**30, True, True),  # filled by Spark executors
    ("always", "IVF64,Flat", 2**30, False, True),
    ("never", "IVF64,Flat", 2**10, True, False),
    ("always", "HNSW32", 2**30, True, False),  # no inverted lists
    ("always", "Flat", 2**30, True, False),
    ("always", "IVF64,PQ8x4fs", 2**30, True, False),  # fast-scan lists are packed in blocks
    ("always", "IVF64,PQ8x4fs,RFlat", 2**30, True, False),  # re-ranking vectors are not in the lists
    ("always", "IVF64,PQ8+16", 2**30, True, False),  # merge_ondisk refuses IndexIVFPQR
])
def test_when_an_index_is_on_disk(mode, factory, budget, distributed, expected):
    assert ann.wants_on_disk(mode, factory, 100_000, 32, budget, prefer=distributed) is expected


@pytest.mark.parametrize("on_disk, distributed, expected_factory, expected_on_disk", [
    ("auto", False, "IVF1024,PQ64x4fs,RFlat", False),  # in RAM: fast-scan codes, re-ranked from mapped vectors
    ("auto", True, "IVF1024,SQ8", True),  # filled by executors: a type whose lists merge into one file
    ("always", False, "IVF1024,SQ8", True),
    ("never", True, "IVF1024,PQ64x4fs,RFlat", False),
])
def test_the_automatic_type_is_one_that_can_be_on_disk_when_it_will_be(on_disk, distributed, expected_factory,
                                                                       expected_on_disk):
    manifest = {"dim": 256, "shards": [], "index_file": None}
    plan = plan_build(manifest, 300_000, ann.AnnOptions(on_disk=on_disk), distributed=distributed)
    assert (plan.factory, plan.on_disk) == (expected_factory, expected_on_disk)


def test_the_option_is_checked_and_old_manifests_keep_their_index():
    with pytest.raises(InvalidInputError, match="on_disk must be auto, always or never"):
        IndexConfig(on_disk="sometimes")
    assert IndexConfig(on_disk="always").ann_overrides()["on_disk"] == "always"
    stored = {k: v for k, v in dataclasses.asdict(ann.AnnOptions()).items() if k != "on_disk"}  # an older release's
    assert same_options(stored, ann.AnnOptions())  # so an index built before is not rebuilt for the new field
    bad = imgsearch("build-index", "--index", "/nonexistent", "--on-disk", "sometimes")
    assert bad.returncode == 2 and "'sometimes' is not one of 'auto', 'always', 'never'" in bad.stderr
