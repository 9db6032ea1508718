"""Indexing on Apache Spark: executors embed, the driver decides ids and publishes.

The driver lists the files exactly as the local engine does and cuts the
listing into tasks of consecutive files.  Executors read, hash, decode and
embed each task's files (``spark_tasks``, in ``mapInPandas`` batches, one
model per Python worker process) and write the results to the work folder,
which may be HDFS, S3 or any URI ``filesystems`` opens.  The driver then
reads the results in listing order through the same ``Ledger`` as the local
engine (dedup by sha256, changed files, skipped files, next id), writes the
index shards, and publishes them with ``pipeline.finish_index`` (FAISS index,
manifest): the index is the one the local engine would have built.

Resume: a task whose results are in the work folder is not run again, and
shards written before an interruption are adopted as by the local engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from indexer.config import IndexConfig
from indexer.errors import ExecutionError, MissingDependencyError
from indexer.folder.store import EmbeddingStore, Row, rows_to_table, schema
from indexer.inputs import filesystems
from indexer.inputs.reader import read_one
from indexer.inputs.sources import ImageFile, iter_image_files
from indexer.run.ledger import Ledger
from indexer.run.pipeline import finish_index, open_index
from indexer.run.spark_tasks import (
    INPUT_SCHEMA,
    KNOWN,
    RESULT_SCHEMA,
    SKIPPED,
    TaskSettings,
    embed_task,
)
from indexer.run.summary import IndexSummary

log = logging.getLogger(__name__)

WORK_DIR = "spark-work"  # inside the index folder, unless IndexConfig.spark_work_dir says elsewhere
MAX_TASK_SIZE = 1024


class SparkJobError(ExecutionError):
    """The Spark job failed; finished tasks are kept for the next run."""


@dataclass
class SparkIndexSummary(IndexSummary):
    tasks: int = 0
    tasks_run: int = 0  # by this run's Spark job
    tasks_reused: int = 0  # finished by an earlier, interrupted run
    task_size: int = 0
    master: str = ""
    spark_seconds: float = 0.0  # the Spark job, wall clock
    executor_seconds: float = 0.0  # summed over tasks
    model_seconds: float = 0.0  # summed over tasks: inference alone
    worker_peak_rss_mb: float = 0.0  # the largest Python worker process

    def lines(self) -> list[str]:
        if not self.tasks_run:
            return super().lines() + [f"spark: no job to run ({self.tasks} tasks, {self.tasks_reused} of them "
                                      "finished by an earlier run)"]
        return super().lines() + [
            f"spark {self.master}: {self.tasks} tasks of up to {self.task_size} files "
            f"({self.tasks_reused} finished by an earlier run), job {self.spark_seconds:.1f}s, "
            f"executors {self.executor_seconds:.1f}s of which the model {self.model_seconds:.1f}s; "
            f"largest Python worker {self.worker_peak_rss_mb:.0f} MB"
        ]


@dataclass(frozen=True)
class Task:
    name: str  # staged result file name: a digest of the backbone and the files
    files: tuple[tuple[int, str, str], ...]  # (ordinal, path, label)


def plan_tasks(files: Sequence[ImageFile], task_size: int, backbone_id: str) -> list[Task]:
    """Cut the listing into tasks of ``task_size`` consecutive files, named by what they hold."""
    tasks = []
    for start in range(0, len(files), task_size):
        chunk = tuple((start + i, f.path, f.label) for i, f in enumerate(files[start:start + task_size]))
        digest = hashlib.sha256(json.dumps([backbone_id, [c[1:] for c in chunk]]).encode()).hexdigest()[:20]
        tasks.append(Task(f"task-{digest}.parquet", chunk))
    return tasks


class WorkFolder:
    """Where executors stage task results for one index.

    Results stay valid while the index is the one (and at the generation)
    they were made for: after a publish, or for another index or backbone,
    they are deleted.  Only its own entries are ever deleted, so the work
    folder may be a shared one (``hdfs:///tmp``).
    """

    def __init__(self, location: str, state: dict):
        self.location = location
        self.tasks_dir = filesystems.join(location, "imgsearch-tasks")
        self.run_file = filesystems.join(location, "imgsearch-run.json")
        self.state = state
        try:
            previous = json.loads(filesystems.read_bytes(self.run_file))
        except (OSError, ValueError):
            previous = None
        if previous is None or any(previous.get(k) != v for k, v in state.items()):
            filesystems.remove_tree(self.tasks_dir)
            self.task_size = None
        else:
            self.task_size = previous.get("task_size")

    def start(self, task_size: int) -> None:
        self.task_size = task_size
        filesystems.make_dirs(self.tasks_dir)
        filesystems.write_bytes(self.run_file, json.dumps(dict(self.state, task_size=task_size)).encode())

    def finished(self) -> set[str]:
        return set(filesystems.list_names(self.tasks_dir))

    def path(self, task: Task) -> str:
        return filesystems.join(self.tasks_dir, task.name)

    def clear(self) -> None:
        filesystems.remove_tree(self.tasks_dir)
        filesystems.remove_file(self.run_file)
        filesystems.remove_dir_if_empty(self.location)


def require_pyspark() -> None:
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        raise MissingDependencyError("the Spark engine needs PySpark (and Java 17+): pip install 'imgsearch[spark]'")


def spark_session(config: IndexConfig = IndexConfig(), extra_conf: dict | None = None):
    """A SparkSession for indexing: the existing one, or a new one for ``config.spark_master``.

    In local mode the Python workers run this interpreter (which has imgsearch)
    unless PYSPARK_PYTHON says otherwise; executors get the model cache folder.
    """
    require_pyspark()
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    if "PYSPARK_GATEWAY_PORT" in os.environ:  # under spark-submit: its JVM holds the master and --conf settings
        SparkContext._ensure_initialized()
    conf = SparkConf()
    master = config.spark_master or conf.get("spark.master", "local[*]")
    if master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName("imgsearch-index").master(master)
    if not conf.contains("spark.executorEnv.IMGSEARCH_CACHE"):
        builder = builder.config("spark.executorEnv.IMGSEARCH_CACHE", str(config.cache_dir))
    if not config.progress:
        builder = builder.config("spark.ui.showConsoleProgress", "false")
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _ship_model(spark, backbone, config: IndexConfig) -> str | None:
    """Convert the model once, here, and ship it with the job: executors never convert it.

    Executors whose model cache lacks it (another machine, another
    $IMGSEARCH_CACHE) take the shipped copy (``spark_tasks``).
    """
    from indexer.model.runtime import _tflite_cache_path, resolve_runtime, tflite_model

    if resolve_runtime(config.runtime) != "tflite":
        return None
    tflite_model(backbone, config.cache_dir)  # converted and cached on first use
    path = _tflite_cache_path(backbone, config.cache_dir)
    if not any(added.endswith("/" + path.name) for added in spark.sparkContext.listFiles):
        spark.sparkContext.addFile(str(path))
    return path.name


def run_tasks(spark, tasks: Sequence[Task], work: WorkFolder, settings: TaskSettings) -> list[dict]:
    """Run ``tasks`` on the cluster, one Spark partition each; returns one result dict per task."""
    sc = spark.sparkContext
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.batch_size))
    described = [(work.path(t), t.files) for t in tasks]
    # one element per slice, so each partition is exactly one task
    rows = sc.parallelize(described, len(described)).flatMap(
        lambda task: [(ordinal, path, label, task[0]) for ordinal, path, label in task[1]])
    frame = spark.createDataFrame(rows, INPUT_SCHEMA)
    sc.setJobDescription(f"imgsearch: embed {sum(len(t.files) for t in tasks)} files in {len(tasks)} tasks")
    try:
        return [r.asDict() for r in frame.mapInPandas(lambda it: embed_task(it, settings), RESULT_SCHEMA).collect()]
    except Exception as exc:  # py4j / PySpark errors: say what happened and that the work is kept
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise SparkJobError(f"the Spark job failed: {first[:500]}. Tasks that finished are kept in "
                            f"{work.location}; run the same command again to resume") from exc


class _TableShards:
    """Writes Arrow tables in the shard schema as shards of ``shard_size`` rows, in order."""

    def __init__(self, store: EmbeddingStore, shard_size: int):
        self.store, self.shard_size = store, shard_size
        self.buffer: list[pa.Table] = []
        self.rows = 0
        self.written: list[str] = []

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.rows += table.num_rows
        while self.rows >= self.shard_size:
            self._write(self.shard_size)

    def _write(self, n: int) -> None:
        table = pa.concat_tables(self.buffer)
        self.written.append(self.store.write_table(table.slice(0, n).combine_chunks()))
        rest = table.slice(n)
        self.buffer, self.rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self.rows:
            self._write(self.rows)


def _shard_rows(table: pa.Table, take: list[int], ids: list[int], dim: int) -> pa.Table:
    """Rows ``take`` of a staged table with their ``ids``, in the shard schema."""
    picked = table.take(pa.array(take, pa.int64()))
    target = schema(dim)
    arrays = [pa.array(ids, pa.int64())] + [picked.column(name).combine_chunks().cast(target.field(name).type)
                                            for name in target.names[1:]]
    return pa.Table.from_arrays(arrays, schema=target)


def index_images_spark(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                       config: IndexConfig = IndexConfig(), *, spark=None, sync: bool = False) -> SparkIndexSummary:
    """``pipeline.index_images`` with the embedding done by Spark executors; the same index results.

    ``spark``: a SparkSession to use (default: ``spark_session(config)``, created
    only when there is something to embed).
    """
    from indexer.model.backbones import load_backbone

    require_pyspark()
    started = time.perf_counter()
    files = list(iter_image_files(sources))  # the local engine's listing, in its order
    summary = SparkIndexSummary(str(index_dir), found=len(files))
    backbone = load_backbone(config.backbone, config.weights, config.cache_dir)
    store, manifest, shards = open_index(index_dir, backbone)
    ledger = Ledger(store, manifest, shards, summary, {f.path for f in files} if sync else None)
    backbone_id = f"{backbone.name}:{backbone.weights_id}"
    work = WorkFolder(config.spark_work_dir or str(store.root / WORK_DIR),
                      {"index": str(store.root.resolve()), "created": manifest.get("created"),
                       "generation": manifest.get("generation", 0), "backbone": backbone_id})

    task_size = config.spark_task_size or work.task_size or (MAX_TASK_SIZE if not files else None)
    if task_size is None:
        spark = spark or spark_session(config)
        cores = spark.sparkContext.defaultParallelism
        task_size = min(MAX_TASK_SIZE, max(1, math.ceil(len(files) / (2 * cores))))
    tasks = plan_tasks(files, task_size, backbone_id)
    work.start(task_size)
    todo = [t for t in tasks if t.name not in work.finished()]
    summary.tasks, summary.tasks_reused, summary.task_size = len(tasks), len(tasks) - len(todo), task_size
    summary.startup_seconds = time.perf_counter() - started
    if todo:
        spark = spark or spark_session(config)
        summary.master = spark.sparkContext.master
        settings = TaskSettings(backbone.name, config.weights, config.runtime, config.batch_size,
                                str(config.cache_dir), _ship_model(spark, backbone, config),
                                spark.sparkContext.broadcast(ledger.known_keys()))
        t = time.perf_counter()
        results = run_tasks(spark, todo, work, settings)
        summary.spark_seconds = time.perf_counter() - t
        summary.tasks_run = len(results)
        summary.executor_seconds = sum(r["seconds"] for r in results)
        summary.model_seconds = sum(r["model_seconds"] for r in results)
        summary.worker_peak_rss_mb = max(r["peak_rss_mb"] for r in results)
        missing = [t.name for t in todo if t.name not in work.finished()]
        if missing:
            raise SparkJobError(f"the Spark job ended but {len(missing)} task results are not in {work.location} "
                                f"(e.g. {missing[0]}); run the same command again")
        log.info("spark: %d tasks on %d worker processes", len(results), len({(r["host"], r["pid"]) for r in results}))

    written, runtime = write_shards(tasks, work, store, ledger, summary, backbone, config)
    runtime = f"spark {summary.master or '(earlier run)'}: {runtime}"
    manifest = finish_index(store, manifest, shards, written, ledger.remove_ids, runtime, config)
    work.clear()
    summary.total = manifest["count"]
    summary.seconds = time.perf_counter() - started
    return summary


def write_shards(tasks: Sequence[Task], work: WorkFolder, store: EmbeddingStore, ledger: Ledger,
                 summary: IndexSummary, backbone, config: IndexConfig) -> tuple[list[str], str]:
    """Staged results -> index shards, in listing order, ids from the ledger; returns (shards, runtime)."""
    from tqdm.auto import tqdm

    shards = _TableShards(store, config.shard_size)
    runtime, driver_embedder = "", None
    for task in tqdm(tasks, unit="task", desc="writing shards", disable=not config.progress or len(tasks) < 2):
        table = filesystems.read_parquet(work.path(task))
        runtime = runtime or (table.schema.metadata or {}).get(b"runtime", b"").decode()
        take: list[int] = []  # rows of the staged table that become index rows
        ids: list[int] = []

        def flush() -> None:
            if take:
                shards.add(_shard_rows(table, take, ids, backbone.dim))
                summary.added += len(take)
                take.clear()
                ids.clear()

        columns = (table.column(c).to_pylist() for c in ("path", "label", "status", "reason", "sha256"))
        for i, (path, label, status, reason, sha) in enumerate(zip(*columns)):
            file = ImageFile(path, label)
            if status == SKIPPED:
                ledger.admit(file, None, reason)
            elif status == KNOWN and not ledger.is_known(sha):
                # indexed when the task ran but not now (removed since, or a 64-bit key collision): embed it here
                item = read_one(file, backbone.input_size, np.empty(0, np.uint64))
                row_id = ledger.admit(file, getattr(item, "sha256", None), getattr(item, "reason", ""))
                if row_id is not None:
                    if driver_embedder is None:
                        from indexer.model.embedder import Embedder

                        driver_embedder = Embedder(backbone, config.batch_size, config.runtime, config.cache_dir)
                    flush()  # rows stay in listing order
                    vector = driver_embedder.embed(item.image.array[None])[0]  # (D,)
                    shards.add(rows_to_table([Row(row_id, path, label, item.image.width, item.image.height,
                                                  item.sha256, vector)], backbone.dim))
                    summary.added += 1
            else:
                row_id = ledger.admit(file, sha)
                if row_id is not None:
                    take.append(i)
                    ids.append(row_id)
        flush()
    shards.close()
    return shards.written, runtime
