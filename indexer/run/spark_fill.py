"""An on-disk index's partial indexes filled by Spark executors (the ``fill`` of ``publish.ondisk``).

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
