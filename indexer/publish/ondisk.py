"""Publishing, stage 3 for an on-disk index: partial indexes filled from the trained one, merged into one file.

The trained, empty index (``trained-GEN.faiss``) is copied once per group of
shards; each copy gets that group's vectors and is written as a partial index
(a *fill*: ``local_fill`` here, group by group in this process, or the Spark
executors' in ``indexer/spark/fill.py``).  FAISS's ``merge_ondisk`` then
concatenates the partials' inverted lists into ``index-GEN.ivfdata`` of the
index folder, and the merged index (``OnDiskInvertedLists`` pointing at that
file, by its bare name: ``folder/ondisk_lists.py``) is what is tuned and
published.  The lists file is written under a temporary name and renamed into
place before the manifest names it, like every other file of a version; the
partials live in a work folder deleted after the merge (and at the start,
if a killed run left one).

An on-disk index is never changed once written: the served version maps its
lists file.  So an incremental run (added shards, removed ids) fills the same
trained file anew into the next generation's files, without retraining,
rather than adding into the served file (which ``OnDiskInvertedLists`` could
do, but a server reading it would see lists change under it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgsearch.indexer.atomic import atomic_path, atomic_write_faiss
from imgsearch.indexer.folder.ondisk_lists import lists_name, point_at
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.publish.shard_vectors import iter_vectors

log = logging.getLogger(__name__)

GROUP_ROWS = 1_000_000  # vectors per partial index: the memory one filling task holds


# fill(store, manifest, groups, trained_file, work) -> the partial index files, local paths, one per group
Fill = Callable[[EmbeddingStore, dict, list[list[str]], str, Path], list[str]]


def shard_groups(store: EmbeddingStore, shards: Sequence[str], group_rows: int = GROUP_ROWS) -> list[list[str]]:
    """``shards`` in order, cut into runs of at most ``group_rows`` rows (a larger shard is a group alone)."""
    groups, rows = [[]], 0
    for name, count in zip(shards, store.shard_rows(shards)):
        if groups[-1] and rows + count > group_rows:
            groups.append([])
            rows = 0
        groups[-1].append(name)
        rows += count
    return [g for g in groups if g]


def fill_group(store: EmbeddingStore, manifest: dict, group: Sequence[str], trained_file: str, path: Path) -> None:
    """Write to ``path`` the trained index with the vectors of ``group``'s shards added (atomically)."""
    index = store.read_index(trained_file)
    for ids, vectors in iter_vectors(store, group, manifest):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    atomic_write_faiss(path, index)


def local_fill(store: EmbeddingStore, manifest: dict, groups: list[list[str]], trained_file: str,
               work: Path) -> list[str]:
    """The partial indexes filled here, one group at a time: memory bounded by one group's."""
    paths = []
    for number, group in enumerate(groups):
        path = work / f"partial-{number:05d}.faiss"
        fill_group(store, manifest, group, trained_file, path)
        paths.append(str(path))
    return paths


def work_folder(store: EmbeddingStore, generation: int) -> Path:
    """Where the partials of a generation are written: hidden in the index folder, removed after the merge."""
    return store.root / f".ondisk-partials-{generation:06d}"


def fill_ondisk(store: EmbeddingStore, manifest: dict, shards: Sequence[str], trained_file: str,
                fill: Fill | None = None):
    """The trained index filled with every vector of ``shards``, its lists in ``index-GEN.ivfdata``.

    ``fill``: how the partial indexes are filled (None: ``local_fill``) and
    where they are merged (its ``run``: one Spark task; None: here).  The
    returned index maps its lists file read-only from the folder, no page of
    it read yet; it is tuned and written by the caller as ``index-GEN.faiss``.
    """
    generation = manifest.get("generation", 0) + 1
    work = work_folder(store, generation)
    shutil.rmtree(work, ignore_errors=True)  # a killed run's partials (the writer lock says no one else's)
    work.mkdir()
    t0 = time.perf_counter()
    lists = lists_name(f"index-{generation:06d}.faiss")
    try:
        groups = shard_groups(store, shards, GROUP_ROWS)
        partials = (fill or local_fill)(store, manifest, groups, trained_file, work)
        filled = time.perf_counter()
        merged, parts = f"{work.name}/merged.faiss", [f"{work.name}/{Path(p).name}" for p in partials]
        runner(fill)(store, merge_partials, trained_file, parts, lists, merged, needs=(trained_file, *parts))
        index = store.read_index(merged, lists_file=lists)
        point_at(index, lists)  # the bare name: read back against the folder, wherever it is
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("filled %d partial indexes in %.1f s, merged them into %s in %.1f s", len(groups),
             filled - t0, lists, time.perf_counter() - filled)
    return index, lists


def merge_partials(store: EmbeddingStore, trained_file: str, partials: Sequence[str], lists: str, out: str) -> None:
    """The ``partials``' inverted lists merged into the folder's ``lists`` file, the index over them written to
    ``out`` (all names in the folder): the merge maps and writes the whole lists file, so it runs where the fill ran."""
    from faiss.contrib.ondisk import merge_ondisk

    index = store.read_index(trained_file)
    with atomic_path(store.root / lists) as tmp, _stdout_to_stderr():
        merge_ondisk(index, [str(store.root / name) for name in partials], str(tmp))
    point_at(index, lists)
    atomic_write_faiss(store.root / out, index)


def run_here(store: EmbeddingStore, fn, *args, needs: Sequence[str] = ()):
    """``fn(store, *args)`` in this process (``needs``: the files it reads, for a runner elsewhere)."""
    return fn(store, *args)


def runner(fill):
    """``run_here``, or the fill's own ``run`` (one step on one of the machines that filled the partials)."""
    return getattr(fill, "run", None) or run_here


@contextlib.contextmanager
def _stdout_to_stderr():
    """FAISS prints each resize of the lists file on standard output, which commands keep for their results
    (``--json``): while merging, what is written to file descriptor 1 goes to 2."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
