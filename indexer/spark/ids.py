"""The ledger's rules (``ledger.Ledger.admit`` and ``final_copies``) as Spark DataFrame steps.

``index-vectors --engine spark`` and ``index --engine spark`` decide ids without
a Python record per row on the driver: the rows of the vectors file (or the
staged tasks' files, ``shards.staged_records``) arrive as a DataFrame of small
records (``RECORDS``: task, ordinal, path as stored, sha256, reason; no
embedding), the index's rows are read from its shards by the executors, and
windows (a path's first row, a content's first row, a task's numbering), joins
with the index's rows (none for a new index) and one ``groupBy`` per task give
every row the fate the local ledger would give it, in the file's order:

- skipped: a bad row (its own reason), or a later row of a path (``row N: its path repeats row M's``);
- embedded: the first row of a content (sha256) the index does not hold, under a new id, or under its
  path's id when its path held other content (changed);
- not embedded: the content is indexed (already_indexed) or an earlier row of the run has it
  (duplicates); a copy of its holder when its path did not hold it;
- removed: the ids of changed paths' old content and, with sync, of paths no longer in the file.

New ids are ``next_id`` + the row's rank among the new-id rows in file order:
the driver collects one count per task, prefix-sums them, and each task
numbers its own rows (a window partitioned by task, never one global
window).  What reaches the driver: one row per task, the counts, the skipped
rows and the copies (both bounded by the bad and duplicate rows, as in
the local summary), and the removed ids as 8-byte integers (``IdArray``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from imgsearch.indexer.folder.copies import Copies, read_copies
from imgsearch.indexer.folder.texts import decode_text, encode_text

# what job 1 yields per row of the vectors file: never an embedding
RECORDS = "task int, ordinal long, path string, sha256 string, reason string"
_EXISTING = "id long, path string, sha256 string"


class IdArray:
    """Sorted unique int64 ids with the set operations a run's ``remove_ids`` needs: 8 bytes an id."""

    def __init__(self, ids):
        self.ids = np.unique(np.asarray(ids, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def __bool__(self) -> bool:
        return len(self.ids) > 0

    def __iter__(self):
        return iter(self.ids.tolist())

    def __contains__(self, row_id) -> bool:
        i = int(np.searchsorted(self.ids, row_id))
        return i < len(self.ids) and self.ids[i] == row_id


@dataclass
class Decisions:
    """What the ledger decided for one run; ``embedded`` stays a DataFrame (task, ordinal, id)."""

    embedded: object  # DataFrame of the rows to write: task, ordinal, id
    per_task: dict[int, int]  # task -> rows it writes
    remove_ids: IdArray
    copies: Copies
    next_id: int
    added: int = 0
    changed: int = 0
    duplicates: int = 0
    already_indexed: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] | None = None  # (path, reason) in file order
    persisted: list | None = None  # DataFrames to unpersist once the shards are written

    def release(self) -> None:
        for frame in self.persisted or []:
            frame.unpersist()


@contextlib.contextmanager
def ledger_partitions(spark, count: int):
    """The ledger's windows and joins shuffle into ``count`` partitions (at least one) while this holds, not
    Spark's default 200: at a few thousand rows, 200 make a run several times slower."""
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(max(1, count)))
    try:
        yield
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)


def collect_ids(frame, column: str) -> np.ndarray:
    """The int64 values of one column, as Arrow batches: no Python object per value."""
    table = frame.select(frame[column].cast("long")).toArrow()
    return table.column(0).to_numpy() if table.num_rows else np.empty(0, np.int64)


def existing_rows(spark, store, shards):
    """(id, path, sha256) of every indexed row, read by the executors straight from the shards."""
    if not shards:
        return spark.createDataFrame([], _EXISTING)
    return spark.read.schema(_EXISTING).parquet(*store.shard_paths(shards))


def decide_ids(spark, records, store, manifest: dict, shards: list[str], sync: bool) -> Decisions:
    """The ledger over ``records`` (a DataFrame of ``RECORDS``, persisted by the caller)."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col = F.col
    records.count()  # the cache filled once, by one job, before the steps below read it
    # a path's first row: a window (one shuffle by path), not a groupBy joined back (two, and a join)
    first_row = F.when(col("path") != "", F.min("ordinal").over(Window.partitionBy("path")))
    rows = records.withColumn("first_row", first_row).persist(StorageLevel.MEMORY_AND_DISK)
    repeat = (col("reason") == "") & col("first_row").isNotNull() & (col("ordinal") != col("first_row"))
    rows = rows.withColumn("reason", F.when(repeat, F.format_string("row %d: its path repeats row %d's", "ordinal",
                                                                    "first_row")).otherwise(col("reason")))
    # in file order, sorted here: as many as the bad rows, and a sort on the cluster would cost a shuffle
    skipped = [(decode_text(path), reason) for _, path, reason in
               sorted(rows.where(col("reason") != "").select("ordinal", "path", "reason").collect())]
    admitted = rows.where(col("reason") == "").select("task", "ordinal", "path", "sha256")

    existing = existing_rows(spark, store, shards)
    next_id = max(_max_id(spark, store, shards, existing) + 1, int(manifest.get("next_id", 0)))  # never reused
    present = records.select("path").distinct()  # with sync: indexed paths not among them are removed
    gone = np.empty(0, np.int64)
    if sync and shards:
        gone = collect_ids(existing.join(present, "path", "left_anti"), "id")
        existing = existing.join(present, "path", "left_semi")
    existing = existing.persist(StorageLevel.MEMORY_AND_DISK)

    fates = admitted.withColumn("sha_first", F.min("ordinal").over(Window.partitionBy("sha256")))
    if shards:  # each row's path's indexed id and content, and its content's holder (the lowest id holding it)
        holders = existing.groupBy("sha256").agg(F.min("id").alias("holder"))
        old = existing.select("path", col("id").alias("old_id"), col("sha256").alias("old_sha"))
        fates = fates.join(old, "path", "left").join(holders, "sha256", "left")
    else:  # a new index holds nothing: no joins (each costs Spark jobs however few the rows)
        fates = fates.select("*", F.lit(None).cast("long").alias("old_id"), F.lit(None).cast("string").alias(
            "old_sha"), F.lit(None).cast("long").alias("holder"))
    fates = (fates.withColumn("known", col("holder").isNotNull())
             .withColumn("new", ~col("known") & (col("ordinal") == col("sha_first")))
             .withColumn("changed", col("old_id").isNotNull() & (col("old_sha") != col("sha256")))
             .withColumn("fresh", col("new") & ~col("changed"))
             .persist(StorageLevel.MEMORY_AND_DISK))
    as_int = lambda c: F.sum(c.cast("long"))
    candidate = ~col("new") & ~(col("old_id").isNotNull() & (col("old_sha") == col("sha256")))  # maybe a copy
    # one row per task: what it writes, its fresh ids, and the run's counts (summed here)
    per_task = sorted(fates.groupBy("task").agg(
        as_int(col("fresh")).alias("fresh"), as_int(col("new")).alias("rows"), as_int(col("changed")).alias("changed"),
        as_int(~col("known") & ~col("new")).alias("duplicates"), as_int(col("known")).alias("already_indexed"),
        as_int(candidate).alias("candidates")).collect())
    counts = {name: sum(getattr(r, name) or 0 for r in per_task)
              for name in ("rows", "changed", "duplicates", "already_indexed", "candidates")}
    offsets, offset = [], next_id
    for r in per_task:
        offsets.append((r.task, offset))
        offset += r.fresh or 0
    offsets = spark.createDataFrame(offsets, "task int, offset long")
    numbered = (fates.where(col("fresh")).join(F.broadcast(offsets), "task")
                .withColumn("id", col("offset") + F.row_number().over(Window.partitionBy("task").orderBy("ordinal"))
                            - 1))
    kept = fates.where(col("new") & col("changed")).withColumn("id", col("old_id"))
    embedded = (numbered.select("task", "ordinal", "sha256", "id").unionByName(kept.select("task", "ordinal", "sha256",
                                                                                          "id"))
                .persist(StorageLevel.MEMORY_AND_DISK))
    changed = fates.where(col("changed")).select(col("old_id").alias("id"), col("ordinal").alias("changed_at"))
    remove_ids = IdArray(np.concatenate([gone, collect_ids(changed, "id") if counts["changed"] else gone[:0]]))

    recorded = read_copies(store.root, manifest)  # bounded by the duplicates, as the local ledger's
    copies = (_final_copies(spark, recorded, fates.where(candidate), fates, embedded, existing, changed,
                            present if sync else None)
              if counts["candidates"] or recorded.by_path else Copies())
    return Decisions(embedded.select("task", "ordinal", "id"), {r.task: r.rows for r in per_task if r.rows},
                     remove_ids, copies, next_id, counts["rows"], counts["changed"], counts["duplicates"],
                     counts["already_indexed"], len(gone), skipped, [embedded, fates, existing, rows])


def _max_id(spark, store, shards, existing) -> int:
    """The largest indexed id (-1: none), from the shards' Parquet footers when they have statistics."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    top = -1
    for path in store.shard_paths(shards):
        meta = pq.ParquetFile(path).metadata
        column = meta.schema.names.index("id")
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max:
                value = existing.agg(F.max("id")).first()[0]  # a footer without them: Spark reads the ids
                return -1 if value is None else int(value)
            top = max(top, int(stats.max))
    return top


def _final_copies(spark, recorded: Copies, candidates, fates, embedded, existing, changed, present) -> Copies:
    """``Ledger.final_copies``: the recorded copies, changed by this run's rows, those whose holder still holds them.

    A row not embedded whose path did not hold its content becomes a copy of the
    content's holder (an indexed id, or the id this run gives its first row),
    unless that indexed holder's own path changed at an earlier row (the local
    ledger no longer holds it then); an embedded row's path is a copy no more.
    """
    from pyspark.sql import functions as F

    col = F.col
    table = spark.createDataFrame([(encode_text(p), i, s) for p, (i, s) in recorded.by_path.items()],
                                  "path string, id long, sha256 string")
    if present is not None:
        table = table.join(present, "path", "left_semi")
    in_run = embedded.select("sha256", col("id").alias("run_holder"))
    candidates = (candidates.join(changed.select(col("id").alias("holder"), "changed_at"), "holder", "left")
                  .where(col("changed_at").isNull() | (col("changed_at") > col("ordinal")))
                  .join(in_run, "sha256", "left")
                  .select("path", F.coalesce(col("holder"), col("run_holder")).alias("id"), "sha256"))
    touched = fates.where(col("new")).select("path").unionByName(candidates.select("path"))
    merged = table.join(touched, "path", "left_anti").unionByName(candidates)
    holds = (existing.join(changed.select("id"), "id", "left_anti").select("id", "sha256")
             .unionByName(embedded.select("id", "sha256")))
    final = merged.join(holds, ["id", "sha256"], "left_semi").collect()
    by_path = {decode_text(r.path): (int(r.id), r.sha256) for r in final}
    return Copies(by_path, changed=by_path != recorded.by_path)
