"""``imgsearch index-vectors --engine spark``: executors read the vectors and write the shards, with their final ids.

The embeddings never pass through the driver.  The driver plans from the
Parquet footer alone: a task is a run of consecutive row groups of SRC, its
rows numbered by their position in the file (the ordinal, as the local run
numbers them).  Then:

1. job 1: each task reads its rows (``VectorSource.batches``: the local run's checks, normalisation and
   stand-in digest) and yields one small record per row (``ids.RECORDS``) into a DataFrame that
   stays on the cluster;
2. the ledger as DataFrame steps (``ids.decide_ids``): the same ids, copies and removals as the
   local ``Ledger``, with only one number per task, the skipped rows and the copies on the driver;
3. job 2: each task reads its rows again, keeps those the ledger embeds, and writes ONE shard of them
   with their ids (``store.write_shard_file``, atomically) into the index's shard folder, under a name
   the driver gave it in advance; it returns (name, rows, peak RSS) only;
4. the driver publishes, as every run does (``SparkVectorStage`` is a stage of the one run,
   ``indexing.run_index``), holding the writer lock from the start.

Resume: before job 2 the driver records the names it gave (``shards.record_names``, the resume record the
images' run writes too, as ``imgsearch-vectors-run.json`` in the work folder); a run killed before publishing leaves shards that the next run deletes before the store could
adopt them, and that run starts over from job 1: ids never depend on which shards a killed run finished.
``remove_ids`` (changed paths, and with sync the paths gone) reach the driver as an int64 array, 8 bytes
an id; the store rewrites the shards holding them at publish, as for every run.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import shard_name, write_shard_file
from imgsearch.indexer.folder.texts import encode_texts
from imgsearch.indexer.inputs import filesystems
from imgsearch.indexer.inputs.sources import ImageFile
from imgsearch.indexer.inputs.vector_source import VectorSource, open_vector_source
from imgsearch.indexer.run.index_vectors import ExternalBackbone, check_model_name
from imgsearch.indexer.run.indexing import Written, embedded_rows, run_index, with_ids
from imgsearch.indexer.spark.images import WORK_DIR, SparkJobError, require_pyspark, spark_session
from imgsearch.indexer.spark.fill import SparkFill
from imgsearch.indexer.spark.groups import per_group
from imgsearch.indexer.spark.ids import RECORDS, Decisions, decide_ids, ledger_partitions
from imgsearch.indexer.spark.shards import discard_unpublished, next_shard_number, record_names
from imgsearch.indexer.spark.tasks import peak_rss_mb
from imgsearch.indexer.run.summary import SparkIndexSummary

MAX_TASK_ROWS = 65_536  # rows a task holds at once in job 2: 335 MB of 1280-d float32 vectors
BATCH_ROWS = 4096
RUN_RECORD = "imgsearch-vectors-run.json"
RECORDS_ARROW = pa.schema([("task", pa.int32()), ("ordinal", pa.int64()), ("path", pa.string()),
                           ("sha256", pa.string()), ("reason", pa.string())])  # RECORDS, as job 1 yields them


@dataclass(frozen=True)
class VectorTask:
    """Consecutive rows of the vectors file, whatever its row groups: one Spark task in each job."""

    index: int
    first_group: int
    end_group: int  # exclusive
    start: int  # the ordinal of its first row
    rows: int
    skip: int = 0  # rows of its first row group before its first row


def plan_vector_tasks(source: VectorSource, task_rows: int) -> list[VectorTask]:
    """Cut the file into tasks of ``task_rows`` rows (the last one fewer), from its footer alone.

    Cut at exact rows, not whole row groups: a task holds its rows at once in job 2, and a file written
    with pyarrow's default (a million rows a group) would make a task of a million rows; tasks of equal
    rows also keep the cores equally busy.  A task that starts inside a row group skips its first rows.
    """
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(source.path).metadata
    group_starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])  # (groups+1,)
    tasks: list[VectorTask] = []
    for start in range(0, int(group_starts[-1]), task_rows):
        rows = min(task_rows, int(group_starts[-1]) - start)
        first = int(np.searchsorted(group_starts, start, side="right")) - 1
        end = int(np.searchsorted(group_starts, start + rows, side="left"))
        tasks.append(VectorTask(len(tasks), first, end, start, rows, start - int(group_starts[first])))
    return tasks


def _task_batches(source: VectorSource, task: VectorTask):
    return source.batches(BATCH_ROWS, row_groups=list(range(task.first_group, task.end_group)),
                          start=task.start - task.skip, skip=task.skip, limit=task.rows)


def record_batches(source: VectorSource, tasks: list[VectorTask], batches: Iterator) -> Iterator[pa.RecordBatch]:
    """Job 1 on an executor (``mapInArrow`` over task numbers): ``RECORDS`` batches of the tasks' rows."""
    for numbers in batches:
        for number in numbers.column("task").to_pylist():
            task = tasks[number]
            for batch in _task_batches(source, task):
                n = len(batch.sha256s)
                yield pa.RecordBatch.from_arrays(
                    [pa.array(np.full(n, task.index, np.int32)), pa.array(np.arange(batch.start, batch.start + n)),
                     pa.array(encode_texts(batch.paths), pa.string()), pa.array(batch.sha256s, pa.string()),
                     pa.array(batch.reasons, pa.string())], schema=RECORDS_ARROW)


def write_task(source: VectorSource, task: VectorTask, name: str, shard_dir: str, ordinals: np.ndarray,
               ids: np.ndarray) -> tuple[str, int, float]:
    """Job 2 on an executor: the task's rows the ledger embeds (``ordinals`` and their ``ids``) as one shard."""
    order = np.argsort(ordinals, kind="stable")
    ordinals, ids = ordinals[order], ids[order]
    parts = []
    for batch in _task_batches(source, task):
        n = len(batch.sha256s)
        lo, hi = np.searchsorted(ordinals, [batch.start, batch.start + n])
        if lo == hi:
            continue
        take = (ordinals[lo:hi] - batch.start).tolist()
        shas = [batch.sha256s[i] for i in take]
        if None in shas:  # job 1 found the row good: only a file changed under the run reads otherwise
            raise RuntimeError(f"{source.path} changed during the run: row {batch.start + take[shas.index(None)]} "
                               "is no longer a good row")
        rows = embedded_rows([ImageFile(batch.paths[i], batch.labels[i]) for i in take], shas, [(0, 0)] * len(take),
                             batch.vectors[take], source.dim)
        parts.append(with_ids(rows, range(len(take)), ids[lo:hi].tolist(), source.dim))
    table = pa.concat_tables(parts)
    if table.num_rows != len(ordinals):
        raise RuntimeError(f"{source.path} changed during the run: task {task.index} wrote {table.num_rows} of "
                           f"{len(ordinals)} rows")
    write_shard_file(Path(shard_dir) / name, table)
    return name, table.num_rows, peak_rss_mb()


def read_records(spark, source: VectorSource, tasks: list[VectorTask]):
    """Job 1: the records of every row, a DataFrame on the cluster (persisted: the ledger reads it several times)."""
    from pyspark import StorageLevel

    numbers = spark.createDataFrame(spark.sparkContext.parallelize([(t.index,) for t in tasks], len(tasks)),
                                    "task int")
    return numbers.mapInArrow(lambda batches: record_batches(source, tasks, batches),
                              RECORDS).persist(StorageLevel.MEMORY_AND_DISK)


def write_shards(spark, source: VectorSource, decisions: Decisions, tasks: list[VectorTask], names: dict[int, str],
                 shard_dir: str) -> list[dict]:
    """Job 2: the task of each name writes its shard, each in a Spark partition of its own (``per_group``)."""
    by_index = {t.index: t for t in tasks}

    def write(number: int, rows: pa.Table) -> dict:
        name, count, peak = write_task(source, by_index[number], names[number], shard_dir,
                                       rows.column("ordinal").to_numpy(), rows.column("id").to_numpy())
        return {"name": name, "rows": count, "peak_rss_mb": peak}

    spark.sparkContext.setJobDescription(f"imgsearch: write {len(names)} shards")
    try:
        return per_group(decisions.embedded, "task", list(names), write)
    except Exception as exc:  # py4j / PySpark errors: say what happened; the next run starts over
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise SparkJobError(f"the Spark job failed: {first[:500]}. Run the same command again: the shards "
                            "this run wrote are deleted first") from exc


@dataclass
class SparkVectorsSummary(SparkIndexSummary):
    """A run's summary, its last line about the vectors' shards."""

    def lines(self) -> list[str]:
        return super(SparkIndexSummary, self).lines() + [
            f"spark {self.master}: {self.tasks} tasks of about {self.task_size} rows, {self.tasks_run} shards "
            f"written by executors in {self.spark_seconds:.1f}s; driver peak RSS {self.driver_peak_rss_mb:.0f} MB, "
            f"largest executor worker {self.worker_peak_rss_mb:.0f} MB"]


class SparkVectorStage:
    """``index-vectors --engine spark`` as a stage of the one run (indexer/run/indexing.py): Spark reads the
    vectors' small columns, decides the ids by the ledger's rules, and executors write the shards."""

    summary_type = SparkVectorsSummary
    uses_ledger = False  # ids are decided by the ledger's rules as DataFrame steps (ids.py)

    def __init__(self, source: VectorSource, spark=None):
        self.source, self.spark = source, spark
        self.run = None
        self.tasks: list[VectorTask] = []
        self.record_path = ""  # the run's resume record: the shards job 2 was given, until published
        self.names: dict[int, str] = {}

    def begin(self, index_dir, config: IndexConfig) -> None:
        self.record_path = filesystems.join(config.spark_work_dir or str(Path(index_dir) / WORK_DIR), RUN_RECORD)
        discard_unpublished(index_dir, self.record_path)

    def prepare(self, run) -> None:
        self.run, summary, config = run, run.summary, run.config
        summary.found = self.source.rows
        self.spark = self.spark or spark_session(config)
        summary.master = self.spark.sparkContext.master
        task_rows = config.spark_task_size or min(MAX_TASK_ROWS, max(1, math.ceil(
            self.source.rows / (2 * self.spark.sparkContext.defaultParallelism))))
        self.tasks = plan_vector_tasks(self.source, task_rows)
        summary.tasks, summary.task_size = len(self.tasks), task_rows
        summary.startup_seconds = time.perf_counter() - run.started

    def write(self, run) -> Written:
        spark, source, summary = self.spark, self.source, run.summary
        t = time.perf_counter()
        with ledger_partitions(spark, len(self.tasks)):  # as many as there are tasks
            records = read_records(spark, source, self.tasks) if self.tasks else spark.createDataFrame([], RECORDS)
            decisions = decide_ids(spark, records, run.store, run.manifest, run.shards, run.sync)
            self.names = _write_job(spark, source, run.store, run.manifest, run.shards, self.tasks, decisions,
                                    self.record_path, summary)
        summary.tasks_run = len(self.names)
        summary.spark_seconds = time.perf_counter() - t
        records.unpersist()
        decisions.release()
        return Written([self.names[t] for t in sorted(self.names)], decisions.remove_ids, decisions.copies)

    @property
    def runtime(self) -> str:
        return f"spark {self.run.summary.master}: external vectors ({os.path.basename(self.source.path)})"

    @functools.cached_property
    def fill(self) -> SparkFill:
        """The FAISS index too is built by the executors (an on-disk index: publish/ondisk.py, spark/fill.py)."""
        return SparkFill(lambda: self.spark)

    def done(self) -> None:
        if self.names:
            filesystems.remove_file(self.record_path)
            filesystems.remove_dir_if_empty(os.path.dirname(self.record_path))
        summary = self.run.summary
        summary.worker_peak_rss_mb = max(summary.worker_peak_rss_mb or 0, self.fill.peak_rss_mb)  # its build tasks'
        summary.driver_peak_rss_mb = peak_rss_mb()


def index_vectors_spark(src: str | os.PathLike, index_dir: str | os.PathLike, config: IndexConfig | None = None, *,
                        model: str = "external", sync: bool = False, wait: bool = True,
                        spark=None) -> SparkVectorsSummary:
    """``index_vectors`` with executors reading the vectors and writing the shards: the same index.

    ``spark``: the SparkSession to use (default: ``spark_session(config)``); ``config.spark_task_size``: rows
    per task (default: 2 tasks per core, at most MAX_TASK_ROWS), cut at exact rows.
    """
    require_pyspark()
    config = config or IndexConfig()
    source = open_vector_source(src)
    backbone = ExternalBackbone(check_model_name(model), source.dim)
    return run_index([], index_dir, config, SparkVectorStage(source, spark), sync=sync, wait=wait, files=[],
                     backbone=backbone)


def _write_job(spark, source, store, manifest, shards, tasks, decisions, record_path, summary) -> dict[int, str]:
    """Count and log what the ledger decided, name the shards, record the names, run job 2; returns the names."""
    for name in ("added", "changed", "duplicates", "already_indexed", "removed", "skipped"):
        setattr(summary, name, getattr(decisions, name))
    store.log_skipped(f"{path}\t{reason}" for path, reason in decisions.skipped)

    number = next_shard_number(store, manifest, shards)
    names = {task: shard_name(number + i) for i, task in enumerate(sorted(decisions.per_task))}
    if names:
        record_names(record_path, store, list(names.values()))  # the one resume record, as the images' run's
        store.shard_dir.mkdir(parents=True, exist_ok=True)
        results = write_shards(spark, source, decisions, tasks, names, str(store.shard_dir))
        _check_written(results, names, decisions, record_path)
        summary.worker_peak_rss_mb = max(r["peak_rss_mb"] for r in results)
    return names


def _check_written(results: list[dict], names: dict[int, str], decisions: Decisions, record_path: str) -> None:
    rows = {r["name"]: r["rows"] for r in results}
    for task, name in names.items():
        if rows.get(name) != decisions.per_task[task]:
            raise SparkJobError(f"the Spark job ended but shard {name} holds {rows.get(name)} rows, not "
                                f"{decisions.per_task[task]}; run the same command again (the run's shards are "
                                f"listed in {record_path} and deleted first)")
