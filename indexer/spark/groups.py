"""One Spark task per group of rows: job 2's shards written side by side, never one after another.

A ``groupBy(key).applyInArrow`` shuffles into ``spark.sql.shuffle.partitions``
partitions, which adaptive execution coalesces: the few MB of ids a write job
moves made one partition, and one Spark task wrote every shard in turn while
the other cores waited (250,000 vectors on ``local[2]``: 4.8 s for the job,
3.3 s in a partition a shard).  A hash or range partitioning of the keys puts
two groups in one partition as soon as they differ in size.  Here each input
partition sends one Arrow IPC blob per group it holds to that group's own
partition (``RDD.partitionBy`` with an exact partitioner): a few blobs a
partition, no Python object per row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa


def per_group(frame, key: str, keys: Sequence[int], fn: Callable[[int, pa.Table], dict]) -> list[dict]:
    """``fn(key value, its rows)`` for each of ``keys``, each in a Spark partition of its own.

    ``frame``: a DataFrame with an integer column ``key``; ``fn`` gets the group's other columns as one
    Arrow table (in no particular order) and returns a small dict, to which ``partition`` (the Spark
    partition that ran it) is added.  Rows of other keys are not read.
    """
    from pyspark.sql import functions as F

    slot = {int(k): i for i, k in enumerate(sorted(keys))}
    if not slot:
        return []
    blobs = frame.where(F.col(key).isin(list(slot))).mapInArrow(functools.partial(_blobs_by_group, key),
                                                                "key long, blob binary").rdd.map(tuple)
    return blobs.partitionBy(len(slot), slot.__getitem__).mapPartitions(functools.partial(_run_groups, fn)).collect()


def _blobs_by_group(key: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """On an executor: this partition's rows as one Arrow IPC blob (every column but ``key``) per group."""
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return
    table = pa.Table.from_batches(batches).sort_by(key)  # once: each group is then a slice, not a filter
    values = table.column(key).to_numpy()  # (n,) sorted
    cuts = (np.flatnonzero(np.diff(values)) + 1).tolist()
    rest = [name for name in table.column_names if name != key]
    for lo, hi in zip([0, *cuts], [*cuts, len(values)]):
        value, group = int(values[lo]), table.slice(lo, hi - lo).select(rest)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, group.schema) as writer:
            writer.write_table(group)
        yield pa.record_batch({"key": pa.array([value], pa.int64()),
                               "blob": pa.array([sink.getvalue().to_pybytes()], pa.binary())})


def _run_groups(fn, blobs: Iterator[tuple[int, bytes]]) -> Iterator[dict]:
    """On an executor: ``fn`` on the group (one, by the partitioner) whose blobs this partition holds."""
    from pyspark import TaskContext

    groups: dict[int, list[pa.Table]] = {}
    for value, blob in blobs:
        groups.setdefault(value, []).append(pa.ipc.open_stream(blob).read_all())
    for value, parts in groups.items():
        yield {**fn(value, pa.concat_tables(parts)), "partition": TaskContext.get().partitionId()}
