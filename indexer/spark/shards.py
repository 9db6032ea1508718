"""Spark jobs that turn staged tasks into shards on the executors: the driver handles records and ids only.

``index --engine spark`` (``spark.index_images_spark``) runs them after the
embed job, and ``index-vectors --engine spark`` shares the resume record:

- ``staged_records``: Spark reads the staged files' small columns (never the
  embedding) as ``ids.RECORDS``, one staged file being one task;
- ``stale_known`` and ``embed_again``: a file an executor found indexed (its
  64-bit key was known when its task ran) whose content the index no longer
  holds (a --sync run removed its holder since, or a key collision) is read
  and embedded again by an executor, which rewrites its staged file: the
  ledger then sees it as the local engine does (embedded, or skipped when it
  can no longer be decoded);
- ``write_shards`` (job 2): the rows the ledger embeds, numbered in listing
  order, are cut every ``shard_size`` rows as the local ``ShardWriter`` cuts
  them (the same shards, names included); the executor of each shard reads
  its rows from the staged files they lie in and writes the shard, with
  the final ids, under the name the driver gave it.  The driver gets back
  (name, rows, peak RSS).

Resume: the names are recorded first (``record_names``); a run killed before
publishing leaves shards that the next run deletes before the store could
adopt them (``discard_unpublished``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from imgsearch.indexer.errors import ExecutionError
from imgsearch.indexer.folder.store import EmbeddingStore, write_shard_file
from imgsearch.indexer.inputs import filesystems
from imgsearch.indexer.inputs.reader import known_keys
from imgsearch.indexer.run.indexing import with_ids
from imgsearch.indexer.spark.groups import per_group
from imgsearch.indexer.spark.ids import RECORDS, Decisions, existing_rows
from imgsearch.indexer.spark.tasks import KNOWN, OK, SKIPPED, peak_rss_mb, restage_task

_STAGED = "ordinal long, path string, status string, reason string, sha256 string"  # what the driver's jobs read


class SparkJobError(ExecutionError):
    """The Spark job failed; finished tasks are kept for the next run."""


def job_error(exc: Exception, advice: str) -> SparkJobError:
    """A py4j / PySpark error as one line that says what happened and what to do."""
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return SparkJobError(f"the Spark job failed: {first[:500]}. {advice}")


def staged_records(spark, paths: list[str], task_size: int):
    """(staged, records): the staged files' small columns with their status, and as ``RECORDS``."""
    from pyspark.sql import functions as F

    if not paths:
        return spark.createDataFrame([], _STAGED), spark.createDataFrame([], RECORDS)
    col = F.col
    staged = spark.read.schema(_STAGED).parquet(*paths)
    skipped = col("status") == SKIPPED
    records = staged.select(
        F.floor(col("ordinal") / task_size).cast("int").alias("task"), "ordinal", "path",
        F.when(skipped, F.lit(None).cast("string")).otherwise(col("sha256")).alias("sha256"),
        F.when(skipped, F.coalesce(col("reason"), F.lit("not read"))).otherwise(F.lit("")).alias("reason"))
    return staged, records


def stale_known(spark, staged, store: EmbeddingStore, shards: list[str], sync: bool) -> list[int]:
    """Ordinals of the rows staged as known whose content the index (after sync) does not hold."""
    from pyspark.sql import functions as F

    held = existing_rows(spark, store, shards)
    if sync:
        held = held.join(staged.select("path").distinct(), "path", "left_semi")
    rows = (staged.where(F.col("status") == KNOWN).join(held.select("sha256").distinct(), "sha256", "left_anti")
            .select("ordinal").collect())  # as many as such files: a handful
    return sorted(r.ordinal for r in rows)


def embed_again(spark, stale: dict[str, list[int]], settings) -> int:
    """Executors read and embed the ``stale`` rows (staged path -> ordinals) and rewrite their staged files."""
    items = sorted(stale.items())
    spark.sparkContext.setJobDescription(f"imgsearch: embed {sum(len(o) for _, o in items)} files again")
    try:
        return sum(spark.sparkContext.parallelize(items, len(items))
                   .map(lambda item: restage_task(item[0], item[1], settings)).collect())
    except Exception as exc:
        raise job_error(exc, "Run the same command again: staged tasks are kept") from exc


def shard_offsets(decisions: Decisions) -> dict[int, int]:
    """Task -> the listing-order rank of its first embedded row: the row numbers that cut the shards."""
    offsets, offset = {}, 0
    for task in sorted(decisions.per_task):
        offsets[task] = offset
        offset += decisions.per_task[task]
    return offsets


def shard_rows(decisions: Decisions, shard_size: int) -> list[int]:
    """Rows of each shard job 2 writes, in order."""
    total = sum(decisions.per_task.values())
    return [min(shard_size, total - start) for start in range(0, total, shard_size)]


def write_shards(spark, decisions: Decisions, offsets: dict[int, int], names: dict[int, str],
                 staged_paths: dict[int, str], shard_size: int, shard_dir: str, dim: int) -> list[dict]:
    """Job 2: shard number -> the executor writing it from the staged files; ``names``: the shards to write."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col = F.col
    table = spark.createDataFrame(sorted(offsets.items()), "task int, offset long")
    rank = col("offset") + F.row_number().over(Window.partitionBy("task").orderBy("ordinal")) - 1
    rows = (decisions.embedded.join(F.broadcast(table), "task")
            .withColumn("shard", F.floor(rank / shard_size).cast("long"))
            .select("shard", "task", "ordinal", "id"))  # per_group reads only the shards in names

    def write(number: int, group: pa.Table) -> dict:
        name, count = write_shard(group, staged_paths, Path(shard_dir) / names[number], dim)
        return {"name": names[number], "rows": count, "peak_rss_mb": peak_rss_mb()}

    spark.sparkContext.setJobDescription(f"imgsearch: write {len(names)} shards")
    try:
        return per_group(rows, "shard", list(names), write)  # a partition a shard, side by side
    except Exception as exc:
        raise job_error(exc, "Run the same command again: the shards this run wrote are deleted first, "
                             "staged tasks are kept") from exc


def write_shard(group: pa.Table, staged_paths: dict[int, str], path: Path, dim: int) -> tuple[str, int]:
    """On an executor: one shard from the staged rows of ``group`` (task, ordinal, id), in listing order."""
    group = group.sort_by("ordinal")
    tasks, ordinals, ids = (group.column(c).to_numpy() for c in ("task", "ordinal", "id"))
    parts = []
    for task in np.unique(tasks):
        mine = tasks == task
        staged = filesystems.read_parquet(staged_paths[int(task)])
        take = ordinals[mine] - staged.column("ordinal")[0].as_py()  # a staged file holds consecutive ordinals
        picked = staged.take(pa.array(take, pa.int64()))
        if picked.column("status").to_pylist() != [OK] * len(take):  # only a staged file changed under us
            raise RuntimeError(f"{staged_paths[int(task)]} changed during the run: a row to index is not embedded")
        parts.append(with_ids(picked, range(len(take)), ids[mine].tolist(), dim))
    write_shard_file(path, pa.concat_tables(parts))
    return path.name, len(ids)


def indexed_keys(store: EmbeddingStore, shards: list[str], present: set[str] | None) -> np.ndarray:
    """Sorted 64-bit keys of the contents indexed (with sync, under a listed path: ``present``, as stored)."""
    import pyarrow.compute as pc

    table = store.read_columns(shards, ["path", "sha256"]) if shards else None
    if table is None or not table.num_rows:
        return known_keys(set())
    if present is not None:
        table = table.filter(pc.is_in(table.column("path"), value_set=pa.array(list(present), pa.string())))
    return known_keys(set(table.column("sha256").to_pylist()))


def record_names(record_path: str, store: EmbeddingStore, names: list[str]) -> None:
    """Record the shards this run is about to write, with the version they would follow."""
    filesystems.make_dirs(os.path.dirname(record_path))
    published = store.read_manifest()  # as on disk: a new folder's manifest was published by open_index
    filesystems.write_bytes(record_path, json.dumps({"shards": published["shards"], "updated": published.get(
        "updated"), "planned": sorted(names)}).encode())


def discard_unpublished(index_dir, record_path: str) -> None:
    """Delete the shards a killed run wrote but never published, before the store could adopt them."""
    try:
        record = json.loads(filesystems.read_bytes(record_path))
    except (OSError, ValueError):
        return
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest() if store.exists() else None
    if manifest and manifest["shards"] == record["shards"] and manifest.get("updated") == record["updated"]:
        store.delete_shards(n for n in record["planned"] if n not in manifest["shards"])
    filesystems.remove_file(record_path)


def next_shard_number(store: EmbeddingStore, manifest: dict, shards: list[str]) -> int:
    last = max([*shards, *store.completed_shards(), manifest.get("shard_high", "")])
    return int(last[5:10]) + 1 if last else 0
