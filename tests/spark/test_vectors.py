"""``index-vectors --engine spark`` (issue 19): executors write the shards, Spark decides the ids.

The same vectors files indexed by the local ``index_vectors`` and by Spark
(the session's one local[2] SparkSession) give the same rows (id, path,
label, sha256, embedding), manifest count and next_id, copies table and
summary counts, through a fresh index, a second run with changed contents,
and a sync run.  Synthetic vectors (``indexer.synthetic``), tiny dimension,
several row groups per file.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.copies import read_copies
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.run.index_vectors import index_vectors
from imgsearch.indexer.synthetic import ClusteredEmbeddings
from tests.helpers import assert_no_embedding_reached, watch_spark_driver

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
DIM = 16
CFG = IndexConfig(progress=False, shard_size=64, spark_master="local[2]", spark_task_size=40)
ODD = ["/x/é ü.jpg", "/x/new\nline.png", "/x/100%.jpg", "/x/🙂 tab\t.png", "\x00starts-with-nul", "/x/'quote\".jpg"]


def _sha(i: int) -> str:
    return hashlib.sha256(f"content-{i}".encode()).hexdigest()


def _write(path: Path, rows: list[tuple]) -> Path:
    """rows: (path, vector or None, label, sha256 or None); row groups of 16 rows."""
    paths, vectors, labels, shas = zip(*rows)
    embedding = [None if v is None else [float(x) for x in v] for v in vectors]
    table = pa.table({"path": pa.array(paths, pa.string()), "embedding": embedding,
                      "label": pa.array(labels, pa.string()), "sha256": pa.array(shas, pa.string())})
    pq.write_table(table, path, row_group_size=16)
    return path


def _first_rows(vectors: np.ndarray) -> list[tuple]:
    rows = [(f"/v/{i:03d}.jpg", vectors[i], f"c{i % 4}", _sha(i) if i % 3 == 0 else None) for i in range(150)]
    rows[5] = (rows[5][0], vectors[5], "c1", _sha(0))  # the same content as row 0 by its given sha256
    rows[7] = ("/v/copy-of-8.jpg", vectors[8] * 3.0, "", None)  # row 8's vector, scaled: the same digest
    rows[20] = (rows[20][0], np.full(DIM, np.nan), "c0", None)
    rows[21] = (rows[21][0], np.zeros(DIM), "c1", None)
    rows[22] = (rows[22][0], vectors[22][:5], "c2", None)
    rows[23] = ("", vectors[23], "c3", None)
    rows[24] = (None, vectors[24], "c0", None)
    rows[25] = (rows[25][0], vectors[25], "c1", "not-a-digest")
    rows[26] = (rows[26][0], None, "c2", None)
    rows[40] = (rows[10][0], vectors[40], "c0", None)  # repeats row 10's path: skipped
    rows[41] = (rows[20][0], vectors[41], "c1", None)  # repeats a bad row's path: skipped too
    for k, name in enumerate(ODD):
        rows[60 + k] = (name, vectors[60 + k], name[-3:], None)
    rows[70] = (ODD[0], vectors[70], "", None)  # an odd path repeated
    rows[149] = ("/v/last.jpg", vectors[0], None, _sha(0))  # content of row 0 again, in the last row group
    return rows


def _second_rows(vectors: np.ndarray, more: np.ndarray) -> list[tuple]:
    rows = _first_rows(vectors)
    rows[30] = (rows[30][0], more[0], "c2", None)  # changed: new content, keeps its id
    rows[31] = (rows[31][0], vectors[32], "c3", None)  # changed: now row 32's content (a copy of it)
    rows[33] = (rows[33][0], more[1], "c1", _sha(33))  # given sha unchanged, vector changed: indexed as is
    rows[7] = ("/v/copy-of-8.jpg", more[2], "", None)  # a recorded copy gets content of its own
    rows[34] = (rows[34][0], vectors[35], "c2", None)  # row 35's content, whose path changes later
    rows[35] = (rows[35][0], more[3], "c3", None)  # ... to new content
    rows[36] = (rows[36][0], more[4], "c0", None)  # changed to content a new row later repeats
    rows += [(f"/w/{i}.jpg", more[10 + i], "new", None) for i in range(20)]  # new rows
    rows += [("/w/dup-of-30.jpg", more[0], "new", None), ("/w/0.jpg", more[40], "", None),  # repeats
             ("/w/again-36.jpg", more[4], "", None)]
    return rows


def _stored(index_dir: Path) -> dict:
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    table = store.read_table(manifest["shards"], ["id", "path", "label", "sha256", "embedding"])
    rows = sorted(zip(*(table.column(c).to_pylist() for c in ("id", "path", "label", "sha256", "embedding"))))
    return {"rows": rows, "count": manifest["count"], "next_id": manifest["next_id"],
            "copies": read_copies(index_dir, manifest).by_path}


def _counts(summary) -> tuple:
    return (summary.added, summary.changed, summary.duplicates, summary.already_indexed, summary.removed,
            summary.skipped, summary.total)


def _assert_same(local_dir: Path, spark_dir: Path) -> None:
    local, spark = _stored(local_dir), _stored(spark_dir)
    assert [r[:4] for r in spark["rows"]] == [r[:4] for r in local["rows"]]
    np.testing.assert_array_equal(np.array([r[4] for r in spark["rows"]], np.float32),
                                  np.array([r[4] for r in local["rows"]], np.float32))
    assert (spark["count"], spark["next_id"], spark["copies"]) == (local["count"], local["next_id"], local["copies"])


@pytest.fixture(scope="module")
def vectors():
    model = ClusteredEmbeddings(DIM, clusters=20, latent=8, seed=3)
    return model.sample(150, seed=1), model.sample(60, seed=2)


def test_spark_gives_the_local_engines_index_through_killed_new_changed_and_sync_runs(spark, vectors, tmp_path,
                                                                                      monkeypatch):
    """One Spark run per step (each costs seconds): killed after two of its shards, resumed, a second run
    with changed contents, a sync run through the CLI; each against the local engine on the same file."""
    from click.testing import CliRunner

    from imgsearch.indexer.spark import vectors as spark_vectors
    from imgsearch.indexer.spark.images import SparkJobError
    from imgsearch.web.cli import main

    first = _write(tmp_path / "first.parquet", _first_rows(vectors[0]))
    second = _write(tmp_path / "second.parquet", _second_rows(*vectors))
    synced = _write(tmp_path / "synced.parquet", [r for i, r in enumerate(_second_rows(*vectors))
                                                  if i % 5 != 2 and i != 8])
    local_dir, spark_dir = tmp_path / "local", tmp_path / "spark"
    local = index_vectors(first, local_dir, CFG, model="syn-16")
    real_decide, real_write_shards = spark_vectors.decide_ids, spark_vectors.write_shards

    def dies_after_two_shards(spark_, source, decisions, tasks, names, shard_dir):
        real_write_shards(spark_, source, decisions, tasks, dict(sorted(names.items())[:2]), shard_dir)
        raise SparkJobError("driver killed")

    monkeypatch.setattr(spark_vectors, "write_shards", dies_after_two_shards)
    with pytest.raises(SparkJobError):
        spark_vectors.index_vectors_spark(first, spark_dir, CFG, model="syn-16", spark=spark)
    store = EmbeddingStore(spark_dir)
    assert len(store.completed_shards()) == 2 and store.read_manifest()["shards"] == []  # written, not published

    seen = watch_spark_driver(monkeypatch, spark_vectors, real_decide, real_write_shards)  # records, never vectors
    resumed = spark_vectors.index_vectors_spark(first, spark_dir, CFG, model="syn-16", spark=spark)
    assert _counts(resumed) == _counts(local)  # started over: nothing of the killed run adopted
    _assert_same(local_dir, spark_dir)
    assert_no_embedding_reached(seen)
    assert sum(r["rows"] for r in seen["results"]) == resumed.added and resumed.tasks == 4
    assert resumed.driver_peak_rss_mb > 0 and resumed.worker_peak_rss_mb > 0
    assert any(p.startswith("\x00") for _, p, *_ in _stored(spark_dir)["rows"])  # an odd path, stored as such

    changed = index_vectors(second, local_dir, CFG, model="syn-16")
    on_spark = spark_vectors.index_vectors_spark(second, spark_dir, CFG, model="syn-16", spark=spark)
    assert _counts(on_spark) == _counts(changed)
    assert changed.changed >= 4 and changed.duplicates and _stored(local_dir)["copies"]  # the rules were tried
    _assert_same(local_dir, spark_dir)

    gone = index_vectors(synced, local_dir, CFG, model="syn-16", sync=True)
    result = CliRunner().invoke(main, ["index-vectors", str(synced), "--index", str(spark_dir), "--model", "syn-16",
                                       "--engine", "spark", "--master", "local[2]", "--task-size", "40", "--sync",
                                       "--shard-size", "64", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert gone.removed > 0 and f"{gone.removed} removed" in result.output
    assert "shards written by executors" in result.output and "driver peak RSS" in result.output
    _assert_same(local_dir, spark_dir)
    assert not (spark_dir / "spark-work").exists()  # the run record is gone once published


def test_cli_bad_input_is_one_error_line(vectors, tmp_path):
    from click.testing import CliRunner

    from imgsearch.web.cli import main

    pq.write_table(pa.table({"name": ["a"], "embedding": [[1.0, 2.0]]}), tmp_path / "nopath.parquet")
    for args, message in (([str(tmp_path / "missing.parquet")], "no such vectors file"),
                          ([str(tmp_path / "nopath.parquet")], "has no column path")):
        done = subprocess.run([IMGSEARCH, "index-vectors", *args, "--index", str(tmp_path / "bad"), "--engine",
                               "spark"], capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    src = _write(tmp_path / "v.parquet", _first_rows(vectors[0]))
    local_only = CliRunner().invoke(main, ["index-vectors", str(src), "--index", str(tmp_path / "x"), "--task-size",
                                           "3"])
    assert local_only.exit_code == 2 and "are for --engine spark" in local_only.output


@pytest.mark.parametrize("group_rows", [16, 1000])
def test_tasks_cut_the_file_at_exact_rows_whatever_its_row_groups(vectors, tmp_path, group_rows):
    # a task holds its rows at once (job 2): whole row groups made tasks of 48 rows for 40 asked, and of the
    # whole file for a file written as one row group (pyarrow's default is a million rows a group)
    from imgsearch.indexer.folder.texts import encode_texts
    from imgsearch.indexer.inputs.vector_source import open_vector_source
    from imgsearch.indexer.spark.vectors import plan_vector_tasks, record_batches

    src = _write(tmp_path / "v.parquet", _first_rows(vectors[0]))
    pq.write_table(pq.read_table(src), src, row_group_size=group_rows)
    source = open_vector_source(src)
    tasks = plan_vector_tasks(source, 40)
    assert [(t.start, t.rows) for t in tasks] == [(0, 40), (40, 40), (80, 40), (120, 30)]
    seen = [pa.Table.from_batches(list(record_batches(source, tasks, [pa.record_batch({"task": [t.index]})])))
            for t in tasks]
    assert [table.num_rows for table in seen] == [40, 40, 40, 30]
    assert pa.concat_tables(seen).column("ordinal").to_pylist() == list(range(150))
    assert pa.concat_tables(seen).column("path").to_pylist() == encode_texts(
        [path or "" for path in pq.read_table(src).column("path").to_pylist()])


def test_a_peak_rss_is_the_process_own_not_its_launcher():
    # Linux keeps ru_maxrss across fork and exec: a driver started by a process holding 400 MB would report
    # 400 MB whatever it did itself (bench_scale's drivers did: 529 MB at 1M and 2M, 209 MB measured alone)
    import subprocess
    import sys

    held = np.ones(400 * 2**20 // 8)  # noqa: F841  (the launcher's memory, touched)
    child = subprocess.run([sys.executable, "-c", "from imgsearch.indexer.spark.tasks import peak_rss_mb; "
                            "print(peak_rss_mb())"], capture_output=True, text=True, check=True)
    assert float(child.stdout) < 300, child.stdout


def test_each_shard_is_written_by_its_own_spark_task(spark, vectors, tmp_path):
    # the rows reach job 2 through a shuffle by task; Spark's adaptive execution coalesced that small shuffle
    # into one partition, so one Spark task wrote every shard in turn while the other cores waited
    from imgsearch.indexer.inputs.vector_source import open_vector_source
    from imgsearch.indexer.run.index_vectors import ExternalBackbone
    from imgsearch.indexer.run.indexing import open_index
    from imgsearch.indexer.spark.ids import decide_ids, ledger_partitions
    from imgsearch.indexer.spark.vectors import plan_vector_tasks, read_records, write_shards

    source = open_vector_source(_write(tmp_path / "v.parquet", _first_rows(vectors[0])))
    tasks = plan_vector_tasks(source, 40)
    store, manifest, shards = open_index(tmp_path / "index", ExternalBackbone("synthetic", source.dim))
    with ledger_partitions(spark, len(tasks)):  # as the run has it
        records = read_records(spark, source, tasks)
        decisions = decide_ids(spark, records, store, manifest, shards, False)
        names = {task: f"shard-{task:06d}.parquet" for task in decisions.per_task}
        store.shard_dir.mkdir(parents=True)
        written = write_shards(spark, source, decisions, tasks, names, str(store.shard_dir))
    assert len(names) == 4 and sorted(r["name"] for r in written) == sorted(names.values())
    assert len({r["partition"] for r in written}) == len(names)
    records.unpersist()
    decisions.release()
