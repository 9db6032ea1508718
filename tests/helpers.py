"""Helpers the tests share: small images, bad files, a live server, waiting for a condition.

Plain functions and classes, imported as ``from tests.helpers import ...``
(conftest.py holds only fixtures: pytest loads it itself, it is not imported).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the repository
DATA = Path(__file__).parent / "data"
V0_INDEX = DATA / "v0-index"  # a folder the previous release indexed, with its answers (tests/search/test_compat.py)


def wait_until(condition: Callable[[], object], timeout: float = 60, what: str = "the condition",
               interval: float = 0.02):
    """Poll ``condition`` until it returns something true, and return that; fail the test after ``timeout`` s.

    For tests that wait on another thread or process: they wait for what they
    need to have happened, never for a fixed time that a slow machine may miss.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def fake_model_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must know the tests' fake model: tests/child_site first on
    PYTHONPATH (its sitecustomize registers the fake at start-up), then the repository (for ``tests``)."""
    path = [str(Path(__file__).parent / "child_site"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **extra}


def copy_v0_index(parent: Path) -> Path:
    """A copy of ``V0_INDEX`` under ``parent``, to open or change."""
    import shutil

    root = parent / "v0-index"
    shutil.copytree(V0_INDEX, root)
    return root


def write_bad_files(folder: Path, good_jpeg: Path) -> dict[str, str]:
    """Zero bytes, a truncated JPEG and a text file named .jpg; returns name -> expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.jpg").write_text("this is a text file, not a picture\n")
    return {"empty.jpg": "empty file", "truncated.jpg": "cannot decode", "notes.jpg": "not an image"}


def solid(color, size=(64, 48), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def rng_image(seed: int, size=(96, 80)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


class LiveServer:
    """The production server (web/server.py, as ``imgsearch serve`` runs it) on a loopback port, in a thread."""

    def __init__(self, app, threads: int = 4):
        import threading

        from imgsearch.web.server import make_server

        self.app = app
        app.config["SERVER_THREADS"] = threads
        self.server = make_server(app, host="127.0.0.1", port=0)
        # waitress's loop wakes every asyncore_loop_timeout (1 s) to see whether it should stop: a tenth of that
        # makes close() return in 0.1 s, not 1 s (the answers are the same; only the idle wake-up is more often)
        self.server.adj.asyncore_loop_timeout = 0.1
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def wait_serving(self, count: int, timeout: float = 60) -> None:
        """Wait until the server answers from a version of ``count`` images: it picks up a version published
        meanwhile in the background, answering from the one it holds until that is open."""
        import requests

        wait_until(lambda: requests.get(f"{self.url}/api/info", timeout=30).json().get("count") == count, timeout,
                   f"the server to serve a version of {count} images", interval=0.1)

    def close(self):
        self._stop_duplicates_jobs()
        self.server.close()
        # waitress's loop runs while any connection is open: close the idle keep-alive ones too
        for channel in list(self.server._map.values()):
            channel.close()
        self.server.task_dispatcher.shutdown()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the server thread did not stop"

    def _stop_duplicates_jobs(self) -> None:
        """Cancel the app's duplicates jobs and wait for their threads: a job queued behind a held one would
        otherwise run on into the next test, and be held by that test's gate in place of its own."""
        jobs = self.app.extensions.get("imgsearch_duplicates_jobs")
        if jobs is None:
            return
        for job in list(jobs._jobs.values()):
            job.stop()
        for thread in list(jobs._threads):
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in jobs._threads), "a duplicates job thread outlived its server"


def watch_spark_driver(monkeypatch, module, decide_ids, write_shards) -> dict:
    """Watch what the driver of a Spark run handles: ``decide_ids`` and ``write_shards`` (the real ones) are
    patched into ``module`` to record the columns of the ledger's records and decisions and job 2's results;
    ``assert_no_embedding_reached`` then checks them."""
    seen = {}

    def decide(spark, records, *args):
        seen["records"] = records.schema.names
        decisions = decide_ids(spark, records, *args)
        seen["embedded"] = decisions.embedded.schema.names
        return decisions

    def write(*args):
        seen["results"] = write_shards(*args)
        return seen["results"]

    monkeypatch.setattr(module, "decide_ids", decide)
    monkeypatch.setattr(module, "write_shards", write)
    return seen


def assert_no_embedding_reached(seen: dict) -> None:
    """The driver saw records and ids only, and job 2 answered with its shards' names and sizes."""
    assert seen["records"] == ["task", "ordinal", "path", "sha256", "reason"]
    assert seen["embedded"] == ["task", "ordinal", "id"]
    assert {tuple(r) for r in seen["results"]} == {("name", "rows", "peak_rss_mb", "partition")}


def mark_area(items, folder: Path, marker) -> None:
    """Give ``marker`` to every collected test under ``folder`` (an area's conftest.py calls it: pytest hands
    every conftest's ``pytest_collection_modifyitems`` the whole session's tests)."""
    for item in items:
        if item.path.is_relative_to(folder):
            item.add_marker(marker)


class VerificationGate:
    """Holds every duplicates computation at its first pair to verify until ``release()``: a job is then
    observably running (stage ``verifying``) for as long as a test needs, with no sleep to guess at."""

    def __init__(self, monkeypatch):
        import threading

        from imgsearch.search.duplicates.keypoints import KeypointMatcher

        self.entered, self.released = threading.Event(), threading.Event()
        self.counts: tuple[int, int] | None = None  # (done, total) of the stage where it was first held
        prepare = KeypointMatcher.prepare  # the pairs to verify, judged all at once before any verdict is read

        def held(this, pairs, done=None, ordered=False):
            progress = getattr(done, "__self__", None)  # ``DuplicatesProgress.advance``: its counts stand still
            if progress is not None and not self.entered.is_set():
                self.counts = (progress.done, progress.total)
            self.entered.set()
            if not self.released.wait(120):
                raise AssertionError("the test never released the verification gate")
            return prepare(this, pairs, done, ordered)

        monkeypatch.setattr(KeypointMatcher, "prepare", held)

    def release(self) -> None:
        self.released.set()
