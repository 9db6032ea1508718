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
more; fewer are judged here.  The processes are spawned, not forked
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
    exit_with_parent()  # a server or command killed outright leaves no verifying process behind
    if path is not None:
        _MAPPED = map_features(path, identity)


def compare_pairs(pairs: Sequence[tuple[int, int]], features: Callable[[int], LocalFeatures | None],
                  workers: int | None = None, done: Callable[[int], None] | None = None,
                  mapped: tuple | None = None, judge: Callable = compare) -> list:
    """``judge(features(a), features(b))`` for each (a, b) of ``pairs``, in their order; ``done(k)``
    after each k pairs judged (a progress bar); ``mapped``: (path, identity, ids) of the side table, whose
    ``ids`` the processes read from it themselves (see above); ``judge``: ``compare`` (the evidence) or
    another function of the verifier's module (``shared_corners``), picklable by name."""
    workers = default_workers() if workers is None else workers
    pairs = [(int(a), int(b)) for a, b in pairs]
    if workers <= 1 or len(pairs) < MIN_PARALLEL:
        out = []
        for a, b in pairs:
            out.append(judge(features(a), features(b)))
            if done:
                done(1)
        return out
    try:
        return _in_processes(pairs, features, workers, done, mapped, judge)
    except BrokenProcessPool as exc:
        log.warning("a verifying process died (%s): the pairs are judged in this process (from a script, "
                    "call it under `if __name__ == \"__main__\":`)", exc)
        return compare_pairs(pairs, features, 1, None, judge=judge)


def _in_processes(pairs: list, features, workers: int, done, mapped, judge) -> list:
    chunks = [pairs[i:i + CHUNK] for i in range(0, len(pairs), CHUNK)]
    path, identity, stored = mapped if mapped is not None else (None, None, np.empty(0, np.int64))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start, initargs=(path, identity)) as pool:
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
