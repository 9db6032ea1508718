"""Indexing on Apache Spark: executors embed and write the shards, the driver decides ids and publishes.

What is Spark's alone lives here: the session, the tasks, the work folder,
the embed job, and the stage (``SparkStage``) that the one run of every engine
(``indexer/run/indexing.py``'s ``run_index``) drives: it locks, opens, resumes and
publishes as for the local engine.  The
driver lists the files exactly as the local engine does (that per-file
listing, a path and a label per file, stays on the driver for now) and cuts
it into tasks of consecutive files.  Then:

1. the embed job: executors read, hash, decode and embed each task's files
   (``tasks``, in ``mapInPandas`` batches, one model per Python worker
   process) and stage the results in the work folder, which may be HDFS, S3
   or any URI ``filesystems`` opens; a staged task is the resume unit;
2. Spark reads the staged files' small columns (``shards.staged_records``:
   task, ordinal, path, sha256, reason; never the embedding); a file staged as
   known whose content the index no longer holds is embedded again by an
   executor (``shards.embed_again``);
3. the ledger's rules as DataFrame steps (``ids.decide_ids``): the ids,
   copies and removals the local ``Ledger`` gives;
4. job 2 (``shards.write_shards``): executors write the shards, cut as the
   local engine cuts them, with their final ids, under names the driver gave;
5. the run publishes (``indexing.finish_index``), holding the writer lock from the start.

So the index is the one the local engine would have built, and no embedding
passes through the driver.  Resume: a task whose results are in the work
folder is not run again; shards a killed run wrote but never published are
deleted by the next run, which writes them again from the staged tasks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import MissingDependencyError
from imgsearch.indexer.folder.manifest import model_precision, recorded_model_spec, resample
from imgsearch.indexer.folder.manifest import precision as index_precision
from imgsearch.indexer.folder.store import shard_name
from imgsearch.indexer.folder.texts import decode_text, encode_text
from imgsearch.indexer.inputs import filesystems
from imgsearch.indexer.inputs.sources import ImageFile
from imgsearch.indexer.run.indexing import IndexRun, Written, run_index
from imgsearch.indexer.spark.ids import decide_ids, ledger_partitions
from imgsearch.indexer.spark.shards import (
    SparkJobError,
    discard_unpublished,
    embed_again,
    indexed_keys,
    next_shard_number,
    record_names,
    shard_offsets,
    shard_rows,
    staged_records,
    stale_known,
    write_shards,
)
from imgsearch.indexer.spark.tasks import (
    INPUT_SCHEMA,
    RESULT_SCHEMA,
    TaskSettings,
    embed_task,
    peak_rss_mb,
)
from imgsearch.indexer.run.summary import SparkIndexSummary

log = logging.getLogger(__name__)

WORK_DIR = "spark-work"  # inside the index folder, unless IndexConfig.spark_work_dir says elsewhere
MAX_TASK_SIZE = 1024
RUN_RECORD = "imgsearch-shards-run.json"  # in the work folder: the shards job 2 was given, until published


@dataclass(frozen=True)
class Task:
    name: str  # staged result file name: a digest of the backbone and the files
    files: tuple[tuple[int, str, str], ...]  # (ordinal, path, label), texts as stored (``texts.encode_text``)


def plan_tasks(files: Sequence[ImageFile], task_size: int, backbone_id: str) -> list[Task]:
    """Cut the listing into tasks of ``task_size`` consecutive files, named by what they hold."""
    tasks = []
    for start in range(0, len(files), task_size):
        chunk = tuple((start + i, encode_text(f.path), encode_text(f.label))
                      for i, f in enumerate(files[start:start + task_size]))
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


def spark_session(config: IndexConfig | None = None, extra_conf: dict | None = None):
    """A SparkSession for indexing: the existing one, or a new one for ``config.spark_master``.

    In local mode the Python workers run this interpreter (which has imgsearch)
    unless PYSPARK_PYTHON says otherwise; executors get the model cache folder.
    """
    require_pyspark()
    config = config or IndexConfig()
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


def _ship_model(spark, backbone, config: IndexConfig, precision: str = "float32",
                calibration=None) -> str | None:
    """Convert the model once, here, and ship it with the job: executors never convert it.

    Executors whose model cache lacks it (another machine, another
    $IMGSEARCH_CACHE) take the shipped copy (``tasks``).
    """
    from imgsearch.indexer.model.runtime import _tflite_cache_path, resolve_runtime, tflite_model

    if getattr(backbone, "onnx", None) is not None or resolve_runtime(config.runtime, precision) != "tflite":
        return None  # an ONNX model runs from its file, at the path the manifest records, on every executor
    tflite_model(backbone, config.cache_dir, precision, calibration)  # converted and cached on first use
    path = _tflite_cache_path(backbone, config.cache_dir, precision, calibration)
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


class SparkStage:
    """The embed job of a Spark run: plan tasks, run those not staged yet.

    ``prepare`` runs the job only for tasks not already staged by an earlier,
    interrupted run; executors skip embedding a file whose 64-bit content key
    is among ``keys`` (the index's contents).
    """

    summary_type = SparkIndexSummary
    uses_ledger = False  # ids are decided by the ledger's rules as DataFrame steps (ids.py)

    def __init__(self, config: IndexConfig, spark=None):
        self.config, self.spark = config, spark
        self.run: IndexRun | None = None
        self.work: WorkFolder | None = None
        self.tasks: list[Task] = []
        self.staged_runtime = ""  # the executors' runtime, as their results record it
        self.known_rows = 0  # files this run's tasks found indexed (not embedded)
        self.record_path = ""  # the run's resume record: the shards job 2 was given, until published

    def begin(self, index_dir, config: IndexConfig) -> None:
        self.record_path = filesystems.join(config.spark_work_dir or str(Path(index_dir) / WORK_DIR), RUN_RECORD)
        discard_unpublished(index_dir, self.record_path)

    def prepare(self, run: IndexRun) -> None:
        config, files, summary, backbone = self.config, run.files, run.summary, run.backbone
        self.run = run
        keys = indexed_keys(run.store, run.shards, {encode_text(f.path) for f in files} if run.sync else None)
        backbone_id = f"{backbone.name}:{backbone.weights_id}"
        if index_precision(run.manifest) != "float32":  # staged results of another model never count
            backbone_id += ":" + index_precision(run.manifest)
        manifest = run.manifest
        work = self.work = WorkFolder(config.spark_work_dir or str(run.store.root / WORK_DIR),
                                      {"index": str(run.store.root.resolve()), "created": manifest.get("created"),
                                       "generation": manifest.get("generation", 0), "backbone": backbone_id})
        task_size = config.spark_task_size or work.task_size or (MAX_TASK_SIZE if not files else None)
        if task_size is None:
            self.spark = self.spark or spark_session(config)
            cores = self.spark.sparkContext.defaultParallelism
            task_size = min(MAX_TASK_SIZE, max(1, math.ceil(len(files) / (2 * cores))))
        self.tasks = plan_tasks(files, task_size, backbone_id)
        work.start(task_size)
        todo = [t for t in self.tasks if t.name not in work.finished()]
        summary.tasks, summary.tasks_reused, summary.task_size = len(self.tasks), len(self.tasks) - len(todo), task_size
        summary.startup_seconds = time.perf_counter() - run.started
        if todo:
            self._run_job(todo, keys)

    def settings(self, keys: np.ndarray | None) -> TaskSettings:
        """What executors need to embed as the index was built (``keys``: broadcast to skip indexed contents)."""
        config, spark = self.config, self._session()
        model = model_precision(self.run.manifest)  # the index's precision, not the defaults
        return TaskSettings(self.run.backbone.name, config.weights, config.runtime, config.batch_size,
                            str(config.cache_dir), _ship_model(spark, self.run.backbone, config, **model),
                            None if keys is None else spark.sparkContext.broadcast(keys), model["precision"],
                            resample(self.run.manifest), recorded_model_spec(self.run.manifest))

    def _run_job(self, todo: list[Task], keys: np.ndarray) -> None:
        summary, work = self.run.summary, self.work
        spark = self._session()
        summary.master = spark.sparkContext.master
        settings = self.settings(keys)
        t = time.perf_counter()
        results = run_tasks(spark, todo, work, settings)
        summary.spark_seconds = time.perf_counter() - t
        summary.tasks_run = len(results)
        self.known_rows = sum(r["known"] for r in results)
        summary.executor_seconds = sum(r["seconds"] for r in results)
        summary.model_seconds = sum(r["model_seconds"] for r in results)
        summary.worker_peak_rss_mb = max(r["peak_rss_mb"] for r in results)
        missing = [t.name for t in todo if t.name not in work.finished()]
        if missing:
            raise SparkJobError(f"the Spark job ended but {len(missing)} task results are not in {work.location} "
                                f"(e.g. {missing[0]}); run the same command again")
        log.info("spark: %d tasks on %d worker processes", len(results), len({(r["host"], r["pid"]) for r in results}))

    @property
    def runtime(self) -> str:
        if not self.staged_runtime and self.tasks:  # from a staged file's footer and one small column
            table = filesystems.read_parquet(self.work.path(self.tasks[0]), columns=["ordinal"])
            self.staged_runtime = (table.schema.metadata or {}).get(b"runtime", b"").decode()
        return f"spark {self.run.summary.master or '(earlier run)'}: {self.staged_runtime}"

    @functools.cached_property
    def fill(self):
        """How the publish fills an on-disk index: on this stage's executors (``fill``); so a run on
        Spark builds an index type that can be on disk, on disk, unless ``--on-disk never``."""
        from imgsearch.indexer.spark.fill import SparkFill

        return SparkFill(self._session)

    def _session(self):
        self.spark = self.spark or spark_session(self.config)
        return self.spark

    def write(self, run: IndexRun) -> Written:
        """Spark reads the staged records, decides the ids, and executors write the shards (job 2)."""
        store, manifest, shards, summary = run.store, run.manifest, run.shards, run.summary
        spark = self._session()
        summary.master = summary.master or spark.sparkContext.master
        paths = {i: self.work.path(t) for i, t in enumerate(self.tasks)}
        # one partition per task, at most two per core
        with ledger_partitions(spark, min(len(paths), 2 * spark.sparkContext.defaultParallelism)):
            staged, records = staged_records(spark, list(paths.values()), summary.task_size)
            # only a reused task, or one this run staged a known file in, can hold a known row the index lacks
            stale = (stale_known(spark, staged, store, shards, run.sync)
                     if shards and (summary.tasks_reused or self.known_rows) else [])
            if stale:  # staged as known, no longer indexed: executors embed them again into their staged files
                by_task: dict[str, list[int]] = {}
                for ordinal in stale:
                    by_task.setdefault(paths[ordinal // summary.task_size], []).append(ordinal)
                summary.embedded_again = embed_again(spark, by_task, self.settings(None))
                staged, records = staged_records(spark, list(paths.values()), summary.task_size)  # read anew
            records = records.persist()
            decisions = decide_ids(spark, records, store, manifest, shards, run.sync)
            names = _write_job(spark, store, manifest, shards, decisions, paths, self.record_path, self.config,
                               summary, run.backbone.dim)
        records.unpersist()
        decisions.release()
        return Written(names, decisions.remove_ids, decisions.copies)

    def done(self) -> None:
        filesystems.remove_file(self.record_path)
        self.work.clear()  # published: the staged results are no longer needed
        summary = self.run.summary
        summary.worker_peak_rss_mb = max(summary.worker_peak_rss_mb or 0, self.fill.peak_rss_mb)  # its build tasks'
        summary.driver_peak_rss_mb = peak_rss_mb()


def index_images_spark(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                       config: IndexConfig | None = None, *, spark=None, sync: bool = False,
                       wait: bool = True) -> SparkIndexSummary:
    """``indexer.run.pipeline.index_images`` with executors embedding and writing the shards; the same index.

    ``spark``: a SparkSession to use (default: ``spark_session(config)``).  The
    driver holds the folder's writer lock for the whole run, Spark jobs included
    (``wait`` as in ``index_images``).
    """
    require_pyspark()
    config = config or IndexConfig()
    return run_index(sources, index_dir, config, SparkStage(config, spark), sync=sync, wait=wait)


def _write_job(spark, store, manifest, shards, decisions, paths, record_path, config, summary, dim) -> list[str]:
    """Count and log what the ledger decided, name the shards, record the names, run job 2; the names, in order."""
    for name in ("added", "changed", "duplicates", "already_indexed", "removed"):
        setattr(summary, name, getattr(decisions, name))
    summary.skipped = [(path, decode_text(reason)) for path, reason in decisions.skipped]
    store.log_skipped(f"{path}\t{reason}" for path, reason in summary.skipped)
    number = next_shard_number(store, manifest, shards)
    names = {i: shard_name(number + i) for i in range(len(shard_rows(decisions, config.shard_size)))}
    if not names:
        return []
    record_names(record_path, store, list(names.values()))
    store.shard_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    results = write_shards(spark, decisions, shard_offsets(decisions), names, paths, config.shard_size,
                           str(store.shard_dir), dim)
    summary.shard_seconds = time.perf_counter() - t
    rows = {r["name"]: r["rows"] for r in results}
    unseen = [name for name in names.values() if name in rows and not (store.shard_dir / name).is_file()]
    if unseen:  # written on the executors' own disks
        raise SparkJobError(f"the executors wrote shard {unseen[0]} where this driver cannot see it: put the index "
                            f"folder {store.root} on a mount the executors share, then run the same command again")
    for name, expected in zip(names.values(), shard_rows(decisions, config.shard_size)):
        if rows.get(name) != expected:
            raise SparkJobError(f"the Spark job ended but shard {name} holds {rows.get(name)} rows, not {expected}; "
                                f"run the same command again (its shards are deleted first)")
    summary.worker_peak_rss_mb = max(summary.worker_peak_rss_mb, *(r["peak_rss_mb"] for r in results))
    return list(names.values())
