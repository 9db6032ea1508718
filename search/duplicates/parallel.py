"""The verifier over many pairs at once, in worker processes: the same ``compare`` as one pair at a time.

``compare_pairs(pairs, features, workers)`` -> [Evidence] in the order of
``pairs``: each chunk of CHUNK pairs goes to a process with the features of
the images it names (their arrays pickled, about 13 KB an image), so no
process reads the side table or a file and memory does not grow with the
workers.  ``compare`` seeds RANSAC per pair (``verifier._keypoints``), so a
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
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence

from imgsearch.indexer.inputs.local_features import LocalFeatures
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


def _chunk(pairs: list, found: dict) -> list[Evidence]:
    return [compare(found[a], found[b]) for a, b in pairs]


def _single_threaded() -> None:
    """A worker's OpenCV uses one thread: the processes are the parallelism."""
    from imgsearch.indexer.inputs.local_features import cv2_module

    cv2_module().setNumThreads(1)


def compare_pairs(pairs: Sequence[tuple[int, int]], features: Callable[[int], LocalFeatures | None],
                  workers: int | None = None, done: Callable[[int], None] | None = None) -> list[Evidence]:
    """``compare(features(a), features(b))`` for each (a, b) of ``pairs``, in their order; ``done(k)``
    after each k pairs judged (a progress bar)."""
    workers = default_workers() if workers is None else workers
    pairs = [(int(a), int(b)) for a, b in pairs]
    if workers <= 1 or len(pairs) < MIN_PARALLEL:
        out = []
        for a, b in pairs:
            out.append(compare(features(a), features(b)))
            if done:
                done(1)
        return out
    try:
        return _in_processes(pairs, features, workers, done)
    except BrokenProcessPool as exc:
        log.warning("a verifying process died (%s): the pairs are judged in this process (from a script, "
                    "call it under `if __name__ == \"__main__\":`)", exc)
        return compare_pairs(pairs, features, 1, None)


def _in_processes(pairs: list, features, workers: int, done) -> list[Evidence]:
    chunks = [pairs[i:i + CHUNK] for i in range(0, len(pairs), CHUNK)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_threaded) as pool:
        window, pending, out = 4 * workers, [], []  # at most this many chunks' features in flight
        for chunk in chunks:
            found = {i: features(i) for pair in chunk for i in pair}
            pending.append((len(chunk), pool.submit(_chunk, chunk, found)))
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
