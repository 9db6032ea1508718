"""The Spark engine in local mode gives the local engine's index: ids, rows, embeddings, search results.

One SparkSession (local[2], the `spark` fixture of conftest, shared by every Spark test); a few hundred real images.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from tests.helpers import (
    assert_no_embedding_reached,
    watch_spark_driver,
    write_bad_files,
)
from imgsearch.web.cli import main

pytestmark = pytest.mark.timeout(600)

CFG = IndexConfig(progress=False, decode_workers=0, shard_size=64, spark_master="local[2]", spark_task_size=32)
COLUMNS = ["id", "path", "label", "width", "height", "sha256"]


@pytest.fixture(scope="module")
def spark_corpus(tmp_path_factory, photos_dir) -> Path:
    """312 files: 200 emoji and 100 MNIST digits in label folders, 8 photos, 3 bad files, 1 duplicate."""
    from imgsearch.indexer.inputs.samples import export_sample

    root = tmp_path_factory.mktemp("spark-corpus")
    export_sample("emoji", root / "emoji", limit=200)
    export_sample("mnist", root / "digits", limit=100)
    shutil.copytree(photos_dir, root / "photos")
    write_bad_files(root / "bad", photos_dir / "coffee.jpg")
    shutil.copy(sorted((root / "emoji" / "Flags").iterdir())[0], root / "bad" / "copy-of-a-flag.png")
    return root


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, spark_corpus):
    index_dir = tmp_path_factory.mktemp("local") / "idx"
    summary = index_images([spark_corpus], index_dir, CFG)
    return index_dir, summary


def table(index_dir):
    store = EmbeddingStore(index_dir)
    return store.read_table(store.read_manifest()["shards"])


def skipped_lines(index_dir) -> list[str]:
    return sorted(line.split("\t", 1)[1] for line in (Path(index_dir) / "skipped.log").read_text().splitlines())


def assert_same_index(a_dir, b_dir, *, atol=1e-5):
    a, b = table(a_dir), table(b_dir)
    assert a.schema == b.schema
    for name in COLUMNS:
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), name
    np.testing.assert_allclose(embeddings_of(b), embeddings_of(a), atol=atol, rtol=0)
    ma, mb = EmbeddingStore(a_dir).read_manifest(), EmbeddingStore(b_dir).read_manifest()
    for key in ("count", "next_id", "shards", "shard_high", "dim", "backbone", "index_type", "search_dim"):
        assert ma.get(key) == mb.get(key), key


def test_spark_index_equals_local_index(spark, spark_corpus, local_index, tmp_path):
    from imgsearch.indexer.spark.images import index_images_spark

    local_dir, local_summary = local_index
    index_dir = tmp_path / "idx"
    summary = index_images_spark([spark_corpus], index_dir, CFG, spark=spark)

    assert (summary.found, summary.added, summary.duplicates) == (312, 308, 1)
    assert summary.added == local_summary.added and summary.tasks == summary.tasks_run == 10
    assert sorted(summary.skipped) == sorted(local_summary.skipped) and len(summary.skipped) == 3
    assert skipped_lines(index_dir) == skipped_lines(local_dir)  # reported from the executors, not lost
    assert_same_index(local_dir, index_dir)
    manifest = EmbeddingStore(index_dir).read_manifest()
    assert manifest["runtime"].startswith("spark local[2]: tflite")
    assert not (index_dir / "spark-work").exists()  # staged results are gone once published

    # executors took the models shipped with the jobs: none was converted on them. The session is shared, so
    # the executors' cache also holds the models of other tests' jobs (a hub preset's, shipped from that test's
    # own cache): only this job's backbone is judged here
    cached = {p.name for p in (spark.executor_cache / "models").iterdir()}
    ours = {name for name in cached if name.startswith(f"{CFG.backbone}-")}
    assert ours and ours <= {p.name for p in (CFG.cache_dir / "models").iterdir()}, (ours, cached)
    # (the log of what the libraries printed while loading them is the only other file: indexer/quiet.py)
    assert all(name.endswith(".tflite") or name.startswith("libraries.log") for name in cached), cached

    local, remote = SearchEngine.open(local_dir), SearchEngine.open(index_dir)
    queries = [spark_corpus / "photos" / "coffee.jpg", spark_corpus / "digits" / "3" / "00003.png",
               next((spark_corpus / "emoji" / "Flags").iterdir())]
    for query in queries:
        a, b = local.search_image(query, k=10), remote.search_image(query, k=10)
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    assert [h.id for h in local.search_id(5, k=10)] == [h.id for h in remote.search_id(5, k=10)]


def test_interrupted_runs_resume_to_the_same_index(spark, spark_corpus, local_index, tmp_path, monkeypatch):
    """Killed mid-job: finished tasks are not run again; killed after job 2 wrote two of its shards: the next run
    deletes them (ids never depend on which shards a killed run finished) and writes them again from the staged
    tasks, with no embed job; the driver handles records and ids, never an embedding."""
    from imgsearch.indexer.inputs import filesystems
    from imgsearch.indexer.spark import images as spark_index

    real_run_tasks, real_write, real_decide, ran = spark_index.run_tasks, spark_index.write_shards, \
        spark_index.decide_ids, []

    def dies_after_four_tasks(spark_, tasks, work, settings):
        ran.append(len(tasks))
        real_run_tasks(spark_, tasks[:4], work, settings)
        raise spark_index.SparkJobError("executor lost")

    def dies_after_two_shards(spark_, decisions, offsets, names, *args):
        real_write(spark_, decisions, offsets, dict(sorted(names.items())[:2]), *args)
        raise spark_index.SparkJobError("driver killed")

    index_dir = tmp_path / "idx"
    tasks_dir = index_dir / "spark-work" / "imgsearch-tasks"
    monkeypatch.setattr(spark_index, "run_tasks", dies_after_four_tasks)
    with pytest.raises(spark_index.SparkJobError):
        spark_index.index_images_spark([spark_corpus], index_dir, CFG, spark=spark)
    staged = {p.name: p.stat().st_mtime_ns for p in tasks_dir.glob("task-*.parquet")}
    assert ran == [10] and len(staged) == 4
    assert EmbeddingStore(index_dir).read_manifest()["count"] == 0  # nothing half-published

    monkeypatch.setattr(spark_index, "run_tasks", real_run_tasks)
    monkeypatch.setattr(spark_index, "write_shards", dies_after_two_shards)
    with pytest.raises(spark_index.SparkJobError):
        spark_index.index_images_spark([spark_corpus], index_dir, CFG, spark=spark)
    store = EmbeddingStore(index_dir)
    assert store.completed_shards() == ["part-00000.parquet", "part-00001.parquet"]  # written by executors
    assert store.read_manifest()["shards"] == []  # not published
    for name, stamp in staged.items():  # the finished tasks were not run again
        assert (tasks_dir / name).stat().st_mtime_ns == stamp
    assert len(list(tasks_dir.glob("task-*.parquet"))) == 10

    seen = watch_spark_driver(monkeypatch, spark_index, real_decide, real_write)

    def no_embedding_on_the_driver(path, columns=None):  # executors run in other processes: not patched there
        assert columns is not None and "embedding" not in columns, path
        return real_read(path, columns)

    real_read = filesystems.read_parquet
    monkeypatch.setattr(filesystems, "read_parquet", no_embedding_on_the_driver)
    summary = spark_index.index_images_spark([spark_corpus], index_dir, CFG, spark=spark)
    assert (summary.tasks, summary.tasks_reused, summary.tasks_run) == (10, 10, 0)  # no embed job
    assert (summary.added, summary.duplicates, len(summary.skipped)) == (308, 1, 3)  # nothing adopted
    assert_no_embedding_reached(seen)
    assert sorted(r["rows"] for r in seen["results"]) == [52, 64, 64, 64, 64]  # cut as the local engine cuts
    assert summary.driver_peak_rss_mb > 0 and "driver peak RSS" in summary.lines()[-1]
    assert_same_index(local_index[0], index_dir)
    assert set(skipped_lines(index_dir)) == set(skipped_lines(local_index[0]))  # each run appends its own
    assert not (index_dir / "spark-work").exists()


def test_incremental_runs_match_the_local_engine(spark, spark_corpus, tmp_path):
    """Adding, changing and (with sync) removing files: both engines end with the same ids."""
    from imgsearch.indexer.spark.images import index_images_spark

    src = tmp_path / "src"
    shutil.copytree(spark_corpus / "digits", src / "digits")
    shutil.copytree(spark_corpus / "photos", src / "photos")
    cfg = dataclasses.replace(CFG, spark_task_size=None)  # the default size: 2 tasks per core
    local_dir, spark_dir = tmp_path / "local", tmp_path / "spark"
    index_images([src], local_dir, cfg)
    first = index_images_spark([src], spark_dir, cfg, spark=spark)
    assert (first.found, first.tasks, first.task_size) == (108, 4, 27)

    shutil.copy(next((spark_corpus / "emoji" / "Flags").iterdir()), src / "photos" / "new.png")  # new
    shutil.copy(src / "photos" / "rocket.jpg", src / "photos" / "coffee.jpg")  # changed: same as another
    shutil.copy(spark_corpus / "photos" / "chelsea.jpg", src / "photos" / "astronaut.jpg")  # changed: same too
    shutil.copy(next((spark_corpus / "emoji" / "Activities").iterdir()), src / "photos" / "retina.jpg")  # changed
    gone = len(list((src / "digits" / "7").iterdir()))
    shutil.rmtree(src / "digits" / "7")
    a = index_images([src], local_dir, cfg, sync=True)
    b = index_images_spark([src], spark_dir, cfg, spark=spark, sync=True)
    for field in ("added", "changed", "removed", "already_indexed", "duplicates", "total"):
        assert getattr(a, field) == getattr(b, field), field
    assert (b.added, b.changed, b.removed) == (2, 3, gone)
    assert_same_index(local_dir, spark_dir)


def test_cli_with_uri_sources_and_work_folder(spark, spark_corpus, local_index, tmp_path):
    """`imgsearch index --engine spark` reading file:// URIs and staging to a URI, as with hdfs:// or s3://."""
    index_dir, work = tmp_path / "idx", tmp_path / "work"
    work.mkdir()
    (work / "not-ours.txt").write_text("a shared work folder")
    args = ["index", f"file://{spark_corpus}/photos/", "--index", str(index_dir), "--engine", "spark",
            "--master", "local[2]", "--task-size", "3", "--work-dir", f"file://{work}", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "indexed 8 new images" in result.output
    assert "spark local[2]: 3 tasks of up to 3 files (0 finished by an earlier run)" in result.output
    assert [p.name for p in work.iterdir()] == ["not-ours.txt"]  # its own entries deleted, nothing else

    a, b = table(local_index[0]), table(index_dir)
    row = {p: i for i, p in enumerate(a.column("path").to_pylist())}
    take = [row[p[len("file://"):]] for p in b.column("path").to_pylist()]
    assert b.column("id").to_pylist() == list(range(8))
    assert b.column("label").to_pylist() == [""] * 8  # files at the root of the source
    assert b.column("sha256").to_pylist() == [a.column("sha256")[i].as_py() for i in take]
    np.testing.assert_allclose(embeddings_of(b), embeddings_of(a)[take], atol=1e-5, rtol=0)

    result = CliRunner().invoke(main, ["index", str(spark_corpus), "--index", str(index_dir), "--task-size", "3"])
    assert result.exit_code == 2 and "--task-size are for --engine spark" in result.output


def test_spark_executors_embed_in_the_index_precision(spark, photos_dir, tmp_path):
    """An int8 index: the executors run the shipped int8 model, so Spark gives the local engine's int8 rows."""
    from imgsearch.indexer.spark.images import index_images_spark

    int8 = dataclasses.replace(CFG, precision="int8")
    index_images([photos_dir], tmp_path / "local", int8)
    index_images([photos_dir], tmp_path / "local-f32", dataclasses.replace(CFG, precision="float32"))
    index_images_spark([photos_dir], tmp_path / "spark", int8, spark=spark)
    assert_same_index(tmp_path / "local", tmp_path / "spark")
    assert EmbeddingStore(tmp_path / "spark").read_manifest()["backbone"]["precision"] == "int8"
    assert "tflite int8" in EmbeddingStore(tmp_path / "spark").read_manifest()["runtime"]
    assert not np.allclose(embeddings_of(table(tmp_path / "spark")), embeddings_of(table(tmp_path / "local-f32")),
                           atol=1e-4)  # the float32 model's rows would differ
    assert any("-int8-" in p.name for p in (spark.executor_cache / "models").iterdir())


# ------------------------------------------------------------------ heads trained with Spark MLlib (issue 20)
HEAD_DIM = 64
HEAD_ROWS, HEAD_CLASSES = 1600, 3


@pytest.fixture(scope="module")
def labelled_vectors_index(tmp_path_factory):
    """1,600 synthetic embeddings of 3 overlapping classes in 4 shards, published (a real index folder).

    scripts/fewshot_table.py --spark makes the same comparison on 5,000 real MNIST embeddings (README)."""
    from imgsearch.indexer.ann.choice import AnnOptions
    from imgsearch.indexer.folder.store import Row
    from imgsearch.indexer.publish.version import publish_index
    from imgsearch.indexer.synthetic import ClusteredEmbeddings

    gen = ClusteredEmbeddings(HEAD_DIM, clusters=HEAD_CLASSES, latent=16, spread=1.6, seed=11)
    rng = np.random.default_rng(12)
    cls = rng.integers(HEAD_CLASSES, size=HEAD_ROWS)
    z = gen.centres[cls] + gen.spread * rng.standard_normal((HEAD_ROWS, 16), dtype=np.float32)
    vectors = np.maximum(z @ gen.layer + gen.bias, 0) + 1e-3
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = EmbeddingStore(tmp_path_factory.mktemp("spark-heads") / "idx")
    store.root.mkdir(parents=True)
    manifest = {"backbone": {"name": "synthetic", "weights": None, "input_size": 0, "preprocessing": "", "resize": ""},
                "dim": HEAD_DIM, "metric": "cosine", "count": 0, "shards": [], "index_file": None, "generation": 0}
    shards = [store.write_shard([Row(i, f"/img/{i}.png", f"class-{cls[i]}", 8, 8, f"{i:064x}", vectors[i])
                                 for i in range(start, start + HEAD_ROWS // 4)], HEAD_DIM)
              for start in range(0, HEAD_ROWS, HEAD_ROWS // 4)]
    publish_index(store, manifest, shards, options=AnnOptions(index_type="Flat"))
    return store.root, vectors, cls


@pytest.mark.parametrize("model", ["softmax", "svm"])
def test_spark_heads_match_local_heads_and_serve_like_them(spark, labelled_vectors_index, model):
    from imgsearch.indexer.folder.heads import load_head
    from imgsearch.indexer.learn.fewshot import fit_linear
    from imgsearch.indexer.spark.heads import train_head_spark

    index_dir, vectors, cls = labelled_vectors_index
    head = train_head_spark(index_dir, f"spark-{model}", model=model, spark=spark)
    m = head.metrics
    assert m["engine"] == "spark" and m["train_images"] + m["val_images"] == HEAD_ROWS
    assert 0.15 * HEAD_ROWS < m["val_images"] < 0.25 * HEAD_ROWS
    # the local head of the same family, on the same training images, scored on the same held-out ones
    held = np.zeros(HEAD_ROWS, bool)
    rows = spark.createDataFrame([(i,) for i in range(HEAD_ROWS)], "id long").selectExpr(
        "id", "abs(xxhash64(id, 0)) % 10000 < 2000 AS held").collect()
    for r in rows:
        held[r[0]] = r[1]
    assert int(held.sum()) == m["val_images"]
    y = np.array([head.classes.index(f"class-{c}") for c in cls])
    local = fit_linear(vectors[~held], y[~held], model)
    local_accuracy = float(((vectors[held] @ local.weights + local.bias).argmax(axis=1) == y[held]).mean())
    spark_accuracy = m["validation"]["accuracy"]
    assert 0.6 < local_accuracy < 0.99  # a task where the two could differ
    assert abs(spark_accuracy - local_accuracy) <= 0.01, (spark_accuracy, local_accuracy)
    # saved in the same format: it loads, classifies and searches head-aware like any other head
    loaded = load_head(index_dir, f"spark-{model}")
    assert loaded.model == model and (model != "svm" or loaded.calibration["method"] == "temperature")
    engine = SearchEngine.open(index_dir)
    assert f"spark-{model}" in engine.head_names()
    top = engine.classify_vector(vectors[0], f"spark-{model}", top=HEAD_CLASSES)
    assert abs(sum(p for _, p in top) - 1) < 1e-4
    hits = engine.search_vector(vectors[0], 5, head=f"spark-{model}")
    assert len(hits) == 5 and hits[0].id == 0


# ------------------------------------------------- executors write the shards with their final ids (issue 19)
def test_a_staged_known_file_the_index_no_longer_holds_is_embedded_again(spark, photos_dir, tmp_path, monkeypatch):
    """Staged as known (its content was indexed under a path since gone), then a --sync run removes that path:
    the staged task is reused and the file embedded again by an executor, as the local engine embeds it."""
    from imgsearch.indexer.spark import images as spark_index

    src = tmp_path / "src"
    shutil.copytree(photos_dir, src)
    cfg = dataclasses.replace(CFG, spark_task_size=3)
    local_dir, spark_dir = tmp_path / "local", tmp_path / "spark"
    index_images([src], local_dir, cfg)
    shutil.copytree(local_dir, spark_dir)  # the index the Spark engine gives (test_spark_index_equals_local_index)
    (src / "moved").mkdir()
    (src / "coffee.jpg").rename(src / "moved" / "coffee.jpg")  # its content stays indexed under the old path

    def killed(*args):
        raise spark_index.SparkJobError("driver killed")

    monkeypatch.setattr(spark_index, "decide_ids", killed)
    with pytest.raises(spark_index.SparkJobError):  # staged the moved file as known, then died
        spark_index.index_images_spark([src], spark_dir, cfg, spark=spark)
    monkeypatch.undo()
    a = index_images([src], local_dir, cfg, sync=True)
    b = spark_index.index_images_spark([src], spark_dir, cfg, spark=spark, sync=True)
    assert (b.tasks, b.tasks_reused, b.tasks_run, b.embedded_again) == (3, 3, 0, 1)
    for field in ("added", "changed", "removed", "already_indexed", "duplicates", "total"):
        assert getattr(a, field) == getattr(b, field), field
    assert (b.added, b.removed) == (1, 1)
    assert_same_index(local_dir, spark_dir)
