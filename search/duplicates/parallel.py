"""The verifier over many pairs at once, in worker processes: the same ``compare`` as one pair at a time.

``compare_pairs(pairs, features, workers, done, mapped)`` -> [Evidence] in
the order of ``pairs``: each chunk of CHUNK pairs goes to a process with the
ids of its images.  With ``mapped`` (the side table's path, its file's
identity and the sorted ids whose stored features are current:
``KeypointMatcher.prepare``) each process memory-maps the table
(``indexer/folder/features.py``) and reads those images' features from it
itself: nothing of them is pickled, and no process holds the table (its
pages are the page cache's).  The features of the other images (computed
from files) are sent with the chunk, pickled (about 22 KiB an image); no
process reads a file.  ``compare`` seeds RANSAC per pair (``verifier._keypoints``), so a
pair's evidence is the same whichever process judges it and whatever else
it judges; ``tests/search/test_duplicates_speed.py`` checks it against the
plain ``compare``.  Processes are started (spawn: the parent may run
FAISS's and TensorFlow's threads) only when there are MIN_PARALLEL pairs or
more; fewer are judged here.  Within ``Workers`` (a context: ``KeypointMatcher.running``) the processes are
started once and serve every call until it ends, and a call of MIN_POOLED pairs or more uses them (the
groups' keeper checks come in many small calls).  The processes are spawned, not forked
(OpenCV's thread pool does not survive a fork: the child hangs), so a script
calling this needs ``if __name__ == "__main__":`` as for indexing; should a
process die, the pairs are judged in this process instead, with a warning.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence

import numpy as np

from imgsearch.indexer.inputs.local_features import LocalFeatures
from imgsearch.indexer.parent_watch import exit_with_parent
from imgsearch.search.duplicates.verifier import Evidence, compare

log = logging.getLogger(__name__)

CHUNK = 128  # pairs a process is handed at once
MIN_PARALLEL = 2000  # fewer pairs: judged in this process (starting processes costs about a second)
MIN_POOLED = 16  # fewer: judged in this process even when the processes are running (``Workers``)


def default_workers() -> int:
    """One process per core this process may use, or ``IMGSEARCH_VERIFY_WORKERS`` (1: none started)."""
    if os.environ.get("IMGSEARCH_VERIFY_WORKERS", "").isdigit():
        return max(1, int(os.environ["IMGSEARCH_VERIFY_WORKERS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_MAPPED = None  # in a worker process: the side table it mapped (``_start``)
_KEPT: OrderedDict = OrderedDict()  # in a worker process: features read from it lately (``kept``)
KEPT = 4096  # features objects kept: an image is judged against many partners, and the verifier keeps what
# it derives from the thumbnail (its content box, its sharpness) on the object (about 1 KB each, plus the views)


def kept(cache: OrderedDict, row_id: int, read: Callable[[], LocalFeatures]) -> LocalFeatures:
    """``read()`` (an image's features, views of the mapped table), the KEPT last read kept in ``cache``."""
    found = cache.get(row_id)
    if found is None:
        found = cache[row_id] = read()
        if len(cache) > KEPT:
            cache.popitem(last=False)
    else:
        cache.move_to_end(row_id)
    return found


def _chunk(pairs: list, found: dict, judge: Callable = compare) -> list:
    def get(i):
        return found[i] if i in found else kept(_KEPT, i, lambda: _MAPPED[i][1])

    return [judge(get(a), get(b)) for a, b in pairs]


def _start(path=None, identity=None) -> None:
    """A worker's OpenCV uses one thread (the processes are the parallelism); it maps the side table."""
    global _MAPPED
    from imgsearch.indexer.folder.features import map_features
    from imgsearch.indexer.inputs.local_features import cv2_module

    cv2_module().setNumThreads(1)
    import faiss

    faiss.omp_set_num_threads(1)  # the descriptors' matching (``verifier._good``) too
    exit_with_parent()  # a server or command killed outright leaves no verifying process behind
    if path is not None:
        _MAPPED = map_features(path, identity)


class Workers:
    """Verifying processes kept for many ``compare_pairs`` calls: started by the first call that needs them
    (MIN_PARALLEL pairs, or MIN_POOLED once running), ended with the context (``with Workers(...)``)."""

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None

    def pool(self, pairs: int, mapped: tuple | None) -> ProcessPoolExecutor | None:
        """The running processes for a call of ``pairs`` pairs (started if it is worth it), else None."""
        if self.workers <= 1 or pairs < (MIN_POOLED if self._pool is not None else MIN_PARALLEL):
            return None
        if self._pool is None:
            self._pool = _new_pool(self.workers, mapped)
        return self._pool

    def close(self) -> None:
        """The processes ended (a later call that needs them starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _new_pool(workers: int, mapped: tuple | None) -> ProcessPoolExecutor:
    path, identity = (mapped[0], mapped[1]) if mapped is not None else (None, None)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(path, identity))


def compare_pairs(pairs: Sequence[tuple[int, int]], features: Callable[[int], LocalFeatures | None],
                  workers: int | None = None, done: Callable[[int], None] | None = None,
                  mapped: tuple | None = None, judge: Callable = compare, kept: Workers | None = None) -> list:
    """``judge(features(a), features(b))`` for each (a, b) of ``pairs``, in their order; ``done(k)``
    after each k pairs judged (a progress bar); ``mapped``: (path, identity, ids) of the side table, whose
    ``ids`` the processes read from it themselves (see above); ``judge``: ``compare`` (the evidence) or
    another function of the verifier's module (``shared_corners``), picklable by name; ``kept``: processes
    kept running between calls (``Workers``; its count of processes stands for ``workers``)."""
    workers = default_workers() if workers is None else workers
    pairs = [(int(a), int(b)) for a, b in pairs]
    pool = None
    if kept is not None:
        pool = kept.pool(len(pairs), mapped)
    elif workers > 1 and len(pairs) >= MIN_PARALLEL:
        pool = _new_pool(workers, mapped)
    if pool is None:
        out = []
        for a, b in pairs:
            out.append(judge(features(a), features(b)))
            if done:
                done(1)
        return out
    try:
        return _in_processes(pairs, features, kept.workers if kept is not None else workers, done,
                             mapped, judge, pool)
    except BrokenProcessPool as exc:
        log.warning("a verifying process died (%s): the pairs are judged in this process (from a script, "
                    "call it under `if __name__ == \"__main__\":`)", exc)
        if kept is not None:  # the others are ended too: later calls start new ones
            kept.close()
        return compare_pairs(pairs, features, 1, None, judge=judge)
    finally:
        if kept is None:
            pool.shutdown(wait=True, cancel_futures=True)


def _in_processes(pairs: list, features, workers: int, done, mapped, judge, pool) -> list:
    size = min(CHUNK, -(-len(pairs) // (2 * workers)))  # a small call is shared by every process too
    chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)]
    stored = mapped[2] if mapped is not None else np.empty(0, np.int64)
    window, pending, out = 4 * workers, [], []  # at most this many chunks' features in flight
    for chunk in chunks:
        ids = np.unique(np.array(chunk, np.int64))
        at = np.minimum(np.searchsorted(stored, ids), max(len(stored) - 1, 0))
        mine = ids[(stored[at] != ids) if len(stored) else slice(None)]  # not read from the table there
        found = {i: features(i) for i in mine.tolist()}
        pending.append((len(chunk), pool.submit(_chunk, chunk, found, judge)))
        if len(pending) >= window:
            n, future = pending.pop(0)
            out += future.result()
            if done:
                done(n)
    for n, future in pending:
        out += future.result()
        if done:
            done(n)
    return out
