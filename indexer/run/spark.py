"""Indexing on Apache Spark: executors embed, the driver decides ids and publishes.

What is Spark's alone lives here: the session, the tasks, the work folder,
running the job and reading what it staged.  The run itself (listing,
ledger, shards, publish) is ``indexing.run_index``, the local engine's, with
``SparkStage`` as its embedding stage.  The driver lists the files exactly
as the local engine does and cuts the listing into tasks of consecutive
files.  Executors read, hash, decode and embed each task's files
(``spark_tasks``, in ``mapInPandas`` batches, one model per Python worker
process) and write the results to the work folder, which may be HDFS, S3 or
any URI ``filesystems`` opens.  The stage then hands the results to the run
in listing order, which admits them through the same ``Ledger`` (dedup by
sha256, changed files, skipped files, next id): the index is the one the
local engine would have built.

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
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from indexer.config import IndexConfig
from indexer.errors import ExecutionError, MissingDependencyError
from indexer.folder.manifest import model_precision, resample
from indexer.folder.manifest import precision as index_precision
from indexer.folder.texts import decode_text, encode_text, texts_of
from indexer.inputs import filesystems
from indexer.inputs.reader import Decoded, read_one
from indexer.inputs.sources import ImageFile
from indexer.run.indexing import IndexRun, Outcome, Outcomes, embedded_rows, run_index
from indexer.run.spark_tasks import (
    INPUT_SCHEMA,
    KNOWN,
    RESULT_SCHEMA,
    SKIPPED,
    TaskSettings,
    embed_task,
)
from indexer.run.summary import SparkIndexSummary

log = logging.getLogger(__name__)

WORK_DIR = "spark-work"  # inside the index folder, unless IndexConfig.spark_work_dir says elsewhere
MAX_TASK_SIZE = 1024


class SparkJobError(ExecutionError):
    """The Spark job failed; finished tasks are kept for the next run."""


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
    $IMGSEARCH_CACHE) take the shipped copy (``spark_tasks``).
    """
    from indexer.model.runtime import _tflite_cache_path, resolve_runtime, tflite_model

    if resolve_runtime(config.runtime, precision) != "tflite":
        return None
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
    """The embedding stage of ``indexing.run_index`` on Spark: plan tasks, run the job, read what it staged.

    ``prepare`` runs the job (only for tasks not already staged by an earlier,
    interrupted run); ``outcomes`` then reads the staged results in listing
    order.  A file an executor found indexed (its 64-bit key was known) but
    that is not indexed now (removed since, or a key collision) is embedded
    here, on the driver.
    """

    summary_type = SparkIndexSummary

    def __init__(self, config: IndexConfig, spark=None):
        self.config, self.spark = config, spark
        self.run: IndexRun | None = None
        self.work: WorkFolder | None = None
        self.tasks: list[Task] = []
        self._staged_runtime = ""  # the executors' runtime, as their results record it
        self._driver_embedder = None

    def prepare(self, run: IndexRun) -> None:
        config, files, summary, backbone = self.config, run.files, run.summary, run.backbone
        self.run = run
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
            self._run_job(todo)

    def _run_job(self, todo: list[Task]) -> None:
        config, summary, work = self.config, self.run.summary, self.work
        spark = self.spark = self.spark or spark_session(config)
        summary.master = spark.sparkContext.master
        model = model_precision(self.run.manifest)  # the index's precision, not the defaults
        settings = TaskSettings(self.run.backbone.name, config.weights, config.runtime, config.batch_size,
                                str(config.cache_dir), _ship_model(spark, self.run.backbone, config, **model),
                                spark.sparkContext.broadcast(self.run.ledger.known_keys()), model["precision"],
                                resample(self.run.manifest))
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

    @property
    def runtime(self) -> str:
        return f"spark {self.run.summary.master or '(earlier run)'}: {self._staged_runtime}"

    @property
    def fill(self):
        """How the publish fills an on-disk index: on this stage's executors (``spark_fill``); so a run on
        Spark builds an index type that can be on disk, on disk, unless ``--on-disk never``."""
        from indexer.run.spark_fill import SparkFill

        return SparkFill(self._session)

    def _session(self):
        self.spark = self.spark or spark_session(self.config)
        return self.spark

    def done(self) -> None:
        self.work.clear()  # published: the staged results are no longer needed

    def outcomes(self) -> Iterator[Outcomes]:
        for task in self.tasks:
            table = filesystems.read_parquet(self.work.path(task))
            self._staged_runtime = self._staged_runtime or (table.schema.metadata or {}).get(b"runtime", b"").decode()
            yield from self._task_outcomes(table)

    def _task_outcomes(self, table: pa.Table) -> Iterator[Outcomes]:
        """One staged task as ``Outcomes``: its rows as staged, cut where the driver embeds a file itself."""
        segment: list[Outcome] = []
        staged_rows: list[int] = []  # rows of the staged table holding segment's embedded files

        def flush() -> Outcomes:
            out = Outcomes(list(segment), table.take(pa.array(staged_rows, pa.int64())) if staged_rows else None)
            segment.clear()
            staged_rows.clear()
            return out

        columns = [texts_of(table, "path"), texts_of(table, "label"),
                   *(table.column(c).to_pylist() for c in ("status", "reason", "sha256"))]
        for i, (path, label, status, reason, sha) in enumerate(zip(*columns)):
            file = ImageFile(path, label)
            if status == SKIPPED:
                segment.append(Outcome(file, None, decode_text(reason)))
            elif status == KNOWN and not self.run.ledger.is_known(sha):
                # indexed when the task ran but not now (removed since, or a 64-bit key collision): embed it here
                item = read_one(file, self.run.backbone.input_size, np.empty(0, np.uint64),
                                resample=resample(self.run.manifest))
                if isinstance(item, Decoded):
                    if segment:
                        yield flush()  # rows stay in listing order
                    yield self._embed_here(item)
                else:
                    segment.append(Outcome(file, getattr(item, "sha256", None), getattr(item, "reason", "")))
            elif status == KNOWN:
                segment.append(Outcome(file, sha))
            else:
                segment.append(Outcome(file, sha, embedded=True))
                staged_rows.append(i)
        if segment:
            yield flush()

    def _embed_here(self, item: Decoded) -> Outcomes:
        backbone, config = self.run.backbone, self.config
        if self._driver_embedder is None:
            from indexer.model.embedder import Embedder

            self._driver_embedder = Embedder(backbone, config.batch_size, config.runtime, config.cache_dir)
        vectors = self._driver_embedder.embed(item.image.array[None])  # (1, D)
        rows = embedded_rows([item.file], [item.sha256], [(item.image.width, item.image.height)], vectors,
                             backbone.dim, [item.info])
        return Outcomes([Outcome(item.file, item.sha256, embedded=True)], rows)


def index_images_spark(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                       config: IndexConfig | None = None, *, spark=None, sync: bool = False,
                       wait: bool = True) -> SparkIndexSummary:
    """``indexer.run.pipeline.index_images`` with the embedding done by Spark executors; the same index results.

    ``spark``: a SparkSession to use (default: ``spark_session(config)``, created
    only when there is something to embed).  The driver holds the folder's
    writer lock for the whole run, Spark job included (``wait`` as in ``index_images``).
    """
    require_pyspark()
    config = config or IndexConfig()
    return run_index(sources, index_dir, config, SparkStage(config, spark), sync=sync, wait=wait)
