"""An on-disk index's partial indexes filled by Spark executors (the ``fill`` of ``publish.ondisk``),
and the build's other reads of every shard (the training sample, the tuning queries and their exact
neighbours: ``publish.shard_vectors``) done by them too.

The driver sends each task a run of shard names, never vectors: the task
opens the index folder itself (the same path on every machine: a shared file
system), reads the trained, empty index and its shards' vectors from it, adds
them and writes its partial index into the work folder beside them
(``ondisk.fill_group``).  It returns the partial's path; the driver then
merges the partials' inverted lists into the folder's lists file
(``ondisk.fill_ondisk``), so the embeddings never pass through the driver.

A task on a machine that does not see the folder (a cluster whose index
folder is on the driver's own disk) fills nothing and says so; the driver
then fills those groups itself (``ondisk.local_fill``, one at a time) and
logs that the folder should be on a shared mount.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from indexer.folder.store import EmbeddingStore
from indexer.publish.ondisk import fill_group

log = logging.getLogger(__name__)

TASKS_PER_CORE = 2  # partials a core fills: a slow task holds up the merge less


class SparkFill:
    """``fill(store, manifest, groups, trained_file, work)`` on the executors of ``session()``."""

    def __init__(self, session: Callable[[], object]):
        self.session = session  # called only when an on-disk index is built: starting Spark is slow

    def __call__(self, store: EmbeddingStore, manifest: dict, groups: list[list[str]], trained_file: str,
                 work: Path) -> list[str]:
        sc = self.session().sparkContext
        runs = spread(groups, TASKS_PER_CORE * sc.defaultParallelism)
        task = functools.partial(_fill_partition, str(store.root.resolve()), manifest, trained_file,
                                 str(Path(work).resolve()))
        t0 = time.perf_counter()
        done = dict(sc.parallelize(list(enumerate(runs)), len(runs)).mapPartitions(task).collect())
        log.info("spark: %d partial indexes filled by the executors in %.1f s", len(done), time.perf_counter() - t0)
        unseen = [number for number, path in sorted(done.items()) if path is None]
        if unseen:
            log.warning("spark: %d executor tasks could not read %s: their shards are added here; put the index "
                        "folder on a file system every executor mounts at the same path", len(unseen), store.root)
            for number in unseen:
                done[number] = str(Path(work) / f"partial-{number:05d}.faiss")
                fill_group(store, manifest, runs[number], trained_file, Path(done[number]))
        return [done[number] for number in sorted(done)]  # the shards' order, as a local fill has it


    # ------------------------------------------------ the build's reads of every shard, where the shards are
    def pick_vectors(self, store: EmbeddingStore, shards, manifest: dict, positions: np.ndarray):
        """``shard_vectors.pick_vectors`` by the executors: each picks the rows of its run of shards."""
        positions = np.asarray(positions, np.int64)
        d = (manifest.get("whitening") or {}).get("dim", manifest["dim"])
        ids, vectors, at = np.empty(len(positions), np.int64), np.empty((len(positions), d), np.float32), 0
        for part_ids, part in self._scan(store, shards, manifest, functools.partial(_pick_run, positions)):
            ids[at:at + len(part_ids)] = part_ids  # filled in place: the sample is held once, not once more
            vectors[at:at + len(part_ids)] = part.reshape(len(part_ids), d)
            at += len(part_ids)
        return ids[:at], vectors[:at]

    def exact_neighbours(self, store: EmbeddingStore, shards, manifest: dict, queries: np.ndarray,
                         query_ids: np.ndarray, graph: bool = False) -> np.ndarray:
        """``shard_vectors.exact_neighbours`` by the executors: each finds the top k+1 over its run of
        shards, the driver merges them (q x (k+1) scores and ids a task)."""
        from indexer import ann

        exact = ann.ExactNeighbours(queries, query_ids)
        job = functools.partial(_exact_run, np.ascontiguousarray(queries, np.float32),
                                np.asarray(query_ids, np.int64), graph)
        for scores, found in self._scan(store, shards, manifest, job):
            exact.add_found(scores, found)
        return exact.result()

    def _scan(self, store: EmbeddingStore, shards, manifest: dict, job) -> Iterator:
        """``job(store, manifest, run, start)`` over contiguous runs of ``shards`` on the executors, in order;
        ``start``: the position of the run's first row.  A run an executor cannot read is done here.  Results
        come one task at a time (``toLocalIterator``): the driver never holds them all twice."""
        shards = list(shards)
        if not shards:
            return
        sc = self.session().sparkContext
        starts = np.concatenate([[0], np.cumsum(store.shard_rows(shards))]).astype(np.int64)
        runs = spread([shards], TASKS_PER_CORE * sc.defaultParallelism)
        first = np.cumsum([0] + [len(r) for r in runs])[:-1]
        numbered = [(i, (int(starts[f]), run)) for i, (f, run) in enumerate(zip(first, runs))]
        task = functools.partial(_scan_partition, str(store.root.resolve()), manifest, job)
        results = sc.parallelize(numbered, len(numbered)).mapPartitions(task).toLocalIterator()
        for (i, result), (_, (start, run)) in zip(results, numbered):  # partitions in order, one task each
            # None: this executor did not see the folder: that run is read here
            yield job(store, manifest, run, start) if result is None else result


def _scan_partition(root: str, manifest: dict, job, numbered_runs):
    """On an executor: (number, job's result) of each run, or (number, None) where it does not see the shards."""
    store = EmbeddingStore(root)
    for number, (start, run) in numbered_runs:
        if not all((store.shard_dir / name).is_file() for name in run):
            yield number, None
            continue
        yield number, job(store, manifest, run, start)


def _pick_run(positions: np.ndarray, store: EmbeddingStore, manifest: dict, run: list[str], start: int):
    """(ids, vectors) of the rows at global ``positions`` in ``run`` (its first row at ``start``)."""
    from indexer.publish.shard_vectors import pick_vectors

    end = start + sum(store.shard_rows(run))
    lo, hi = np.searchsorted(positions, [start, end])
    if lo == hi:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    return pick_vectors(store, run, manifest, positions[lo:hi] - start)


def _exact_run(queries: np.ndarray, query_ids: np.ndarray, graph: bool, store: EmbeddingStore, manifest: dict,
               run: list[str], start: int):
    """(scores, ids), (q, k+1) each: the queries' exact top k+1 over ``run``'s rows."""
    from indexer.publish.shard_vectors import exact_over

    return exact_over(store, run, manifest, queries, query_ids, graph).partial()


def spread(groups: list[list[str]], tasks: int) -> list[list[str]]:
    """The groups' shards, in order, in at least ``len(groups)`` and up to ``tasks`` contiguous runs
    (never more runs than shards), each no larger than a group."""
    shards = [name for group in groups for name in group]
    count = min(len(shards), max(len(groups), tasks))
    if count <= len(groups):
        return groups
    return [list(run) for run in np.array_split(np.array(shards, dtype=object), count) if len(run)]


def _fill_partition(root: str, manifest: dict, trained_file: str, work: str,
                    numbered_runs: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, str | None]]:
    """On an executor: (number, path) of each run's partial index, filled from the folder and written to
    ``work``; (number, None) where this machine does not see the folder."""
    store = EmbeddingStore(root)
    for number, run in numbered_runs:
        if not (store.root / trained_file).is_file() or not Path(work).is_dir():
            yield number, None
            continue
        path = Path(work) / f"partial-{number:05d}.faiss"
        fill_group(store, manifest, run, trained_file, path)
        yield number, str(path)
