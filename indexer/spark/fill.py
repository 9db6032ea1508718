"""An on-disk index's partial indexes filled by Spark executors (the ``fill`` of ``publish.ondisk``),
the build's other reads of every shard (the training sample, the tuning queries and their exact
neighbours: ``publish.shard_vectors``) done by them too, and the build's steps that hold memory
growing with the set (training, merging the lists, tuning on the mapped lists) each run by one
executor task (``run``): the driver holds the ids and small results, never a sample, a partial
index or a page of the lists file.

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
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.errors import ImgsearchError
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.publish.ondisk import fill_group
from imgsearch.indexer.spark.tasks import peak_rss_mb

log = logging.getLogger(__name__)

TASKS_PER_CORE = 2  # partials a core fills: a slow task holds up the merge less


class SparkFill:
    """``fill(store, manifest, groups, trained_file, work)`` on the executors of ``session()``."""

    def __init__(self, session: Callable[[], object]):
        self.session = session  # called only when an on-disk index is built: starting Spark is slow
        self.peak_rss_mb = 0.0  # the largest Python worker's peak among this build's tasks

    def _saw(self, peak: float) -> None:
        self.peak_rss_mb = max(self.peak_rss_mb, peak)

    def __call__(self, store: EmbeddingStore, manifest: dict, groups: list[list[str]], trained_file: str,
                 work: Path) -> list[str]:
        sc = self.session().sparkContext
        runs = spread(groups, TASKS_PER_CORE * sc.defaultParallelism)
        task = functools.partial(_fill_partition, str(store.root.resolve()), manifest, trained_file,
                                 str(Path(work).resolve()))
        t0 = time.perf_counter()
        done = {}
        for number, path, peak in sc.parallelize(list(enumerate(runs)), len(runs)).mapPartitions(task).collect():
            done[number] = path
            self._saw(peak)
        log.info("spark: %d partial indexes filled by the executors in %.1f s", len(done), time.perf_counter() - t0)
        unseen = [number for number, path in sorted(done.items()) if path is None]
        if unseen:
            log.warning("spark: %d executor tasks could not read %s: their shards are added here; put the index "
                        "folder on a file system every executor mounts at the same path", len(unseen), store.root)
            for number in unseen:
                done[number] = str(Path(work) / f"partial-{number:05d}.faiss")
                fill_group(store, manifest, runs[number], trained_file, Path(done[number]))
        return [done[number] for number in sorted(done)]  # the shards' order, as a local fill has it


    # ------------------------------------------------ one step on one executor: memory off the driver
    def run(self, store: EmbeddingStore, fn, *args, needs: tuple[str, ...] = ()):
        """``fn(store, *args)`` in one Spark task, on an executor that sees the index folder and the files
        ``needs`` names in it; here, with a warning, when it does not.  An ``ImgsearchError`` it raises
        (a sample FAISS cannot train on) is raised here as it was there."""
        sc = self.session().sparkContext
        task = functools.partial(_run_partition, str(store.root.resolve()), fn, args, needs)
        [(seen, outcome, peak)] = sc.parallelize([0], 1).mapPartitions(task).collect()
        self._saw(peak)
        if not seen:
            log.warning("spark: the executor could not read %s: %s runs here; put the index folder on a file "
                        "system every executor mounts at the same path", store.root, getattr(fn, "__name__", fn))
            return fn(store, *args)
        if isinstance(outcome, ImgsearchError):
            raise outcome
        return outcome

    def train(self, store: EmbeddingStore, manifest: dict, shards, positions: np.ndarray, make_trained) -> str:
        """The trained file ``make_trained(store, sample)`` writes, from the rows at ``positions``: the executors
        write the rows they pick into a work folder, one task trains on them (``run``)."""
        folder = store.root / f".training-sample-{manifest.get('generation', 0) + 1:06d}"
        shutil.rmtree(folder, ignore_errors=True)  # a killed run's (the writer lock says no one else's)
        folder.mkdir()
        try:
            job = functools.partial(_pick_to_file, np.asarray(positions, np.int64), str(folder.resolve()))
            parts = [part for part in self._scan(store, shards, manifest, job) if part[1]]
            relative = tuple(f"{folder.name}/{name}" for name, _ in parts)
            return self.run(store, _train_on_parts, relative, sum(rows for _, rows in parts), make_trained,
                            needs=relative)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------ the build's reads of every shard, where the shards are
    def pick_vectors(self, store: EmbeddingStore, shards, manifest: dict, positions: np.ndarray):
        """``shard_vectors.pick_vectors`` by the executors: each picks the rows of its run of shards."""
        positions = np.asarray(positions, np.int64)
        d = (manifest.get("whitening") or {}).get("dim", manifest["dim"])
        ids, vectors, at = np.empty(len(positions), np.int64), np.empty((len(positions), d), np.float32), 0
        for part_ids, part in self._scan(store, shards, manifest, functools.partial(_pick_run, positions)):
            ids[at:at + len(part_ids)] = part_ids
            vectors[at:at + len(part_ids)] = part.reshape(len(part_ids), d)
            at += len(part_ids)
        return ids[:at], vectors[:at]

    def exact_neighbours(self, store: EmbeddingStore, shards, manifest: dict, queries: np.ndarray,
                         query_ids: np.ndarray, graph: bool = False) -> np.ndarray:
        """``shard_vectors.exact_neighbours`` by the executors: each finds the top k+1 over its run of
        shards, the driver merges them (q x (k+1) scores and ids a task)."""
        from imgsearch.indexer import ann

        exact = ann.ExactNeighbours(queries, query_ids)
        job = functools.partial(_exact_run, np.ascontiguousarray(queries, np.float32),
                                np.asarray(query_ids, np.int64), graph)
        for scores, found in self._scan(store, shards, manifest, job):
            exact.add_found(scores, found)
        return exact.result()

    def _scan(self, store: EmbeddingStore, shards, manifest: dict, job) -> Iterator:
        """``job(store, manifest, run, start)`` over contiguous runs of ``shards`` on the executors, in order;
        ``start``: the position of the run's first row.  A run an executor cannot read is done here.  All
        runs at once (``collect``: a job per run, as ``toLocalIterator`` makes, would run them one at a time);
        what comes back is small: picked rows, a (q, k+1) partial, or a file name."""
        shards = list(shards)
        if not shards:
            return
        sc = self.session().sparkContext
        starts = np.concatenate([[0], np.cumsum(store.shard_rows(shards))]).astype(np.int64)
        runs = spread([shards], TASKS_PER_CORE * sc.defaultParallelism)
        first = np.cumsum([0] + [len(r) for r in runs])[:-1]
        numbered = [(i, (int(starts[f]), run)) for i, (f, run) in enumerate(zip(first, runs))]
        task = functools.partial(_scan_partition, str(store.root.resolve()), manifest, job)
        results = sc.parallelize(numbered, len(numbered)).mapPartitions(task).collect()
        for (i, result), (_, (start, run)) in zip(results, numbered):  # partitions in order, one run each
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


def _run_partition(root: str, fn, args: tuple, needs: tuple[str, ...], _):
    """On an executor: (seen, fn's result or the ImgsearchError it raised, peak RSS); seen False where this
    machine does not see the folder or a file it needs."""
    store = EmbeddingStore(root)
    if not store.root.is_dir() or not all((store.root / name).is_file() for name in needs):
        yield False, None, peak_rss_mb()
        return
    try:
        outcome = fn(store, *args)
    except ImgsearchError as exc:
        outcome = exc
    yield True, outcome, peak_rss_mb()


def _pick_to_file(positions: np.ndarray, folder: str, store: EmbeddingStore, manifest: dict, run: list[str],
                  start: int):
    """(file name, rows) of the rows at global ``positions`` in ``run``, saved into ``folder``; ("", 0): none
    there (not None, which says an executor did not see the folder)."""
    ids, vectors = _pick_run(positions, store, manifest, run, start)
    if not len(ids):
        return "", 0
    name = f"part-{start:012d}.npy"  # the run's first row: unique, and sorted as the rows are
    with atomic_path(Path(folder) / name, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(vectors, np.float32))
    return name, len(ids)


def _train_on_parts(store: EmbeddingStore, parts: tuple[str, ...], rows: int, make_trained) -> str:
    """On one executor: the sample read back from ``parts`` in order, (rows, d), and trained on."""
    sample, at = None, 0
    for name in parts:
        part = np.load(store.root / name)  # (r, d)
        if sample is None:
            sample = np.empty((rows, part.shape[1]), np.float32)
        sample[at:at + len(part)] = part
        at += len(part)
    return make_trained(store, sample)


def _pick_run(positions: np.ndarray, store: EmbeddingStore, manifest: dict, run: list[str], start: int):
    """(ids, vectors) of the rows at global ``positions`` in ``run`` (its first row at ``start``)."""
    from imgsearch.indexer.publish.shard_vectors import pick_vectors

    end = start + sum(store.shard_rows(run))
    lo, hi = np.searchsorted(positions, [start, end])
    if lo == hi:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    return pick_vectors(store, run, manifest, positions[lo:hi] - start)


def _exact_run(queries: np.ndarray, query_ids: np.ndarray, graph: bool, store: EmbeddingStore, manifest: dict,
               run: list[str], start: int):
    """(scores, ids), (q, k+1) each: the queries' exact top k+1 over ``run``'s rows."""
    from imgsearch.indexer.publish.shard_vectors import exact_over

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
                    numbered_runs: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, str | None, float]]:
    """On an executor: (number, path, peak RSS) of each run's partial index, filled from the folder and
    written to ``work``; path None where this machine does not see the folder."""
    store = EmbeddingStore(root)
    for number, run in numbered_runs:
        if not (store.root / trained_file).is_file() or not Path(work).is_dir():
            yield number, None, peak_rss_mb()
            continue
        path = Path(work) / f"partial-{number:05d}.faiss"
        fill_group(store, manifest, run, trained_file, path)
        yield number, str(path), peak_rss_mb()
