"""Duplicates as a job: started, watched and cancelled over HTTP, so a long computation never holds a request.

- ``POST /api/duplicates/jobs`` (a JSON object: ``threshold``, ``keep``, ``keypoints``, read and checked as
  ``GET /api/duplicates`` reads them) answers 202 with the job (``Location``: its URL), or 200 with a finished
  job when the report is already computed.  A job of the same version and options that is running or done is
  reused: one computation per (version, threshold, keep, keypoints, marks), whoever asks.
- ``GET /api/duplicates/jobs/<id>`` (``offset``, ``limit``: the page of groups) answers its ``state``
  (running, done, cancelled, failed), ``stage`` (queued, then search/duplicates/progress.py's pairs,
  verifying, grouping), ``done`` and ``total`` of that stage, and, once done, ``result``: the page
  ``GET /api/duplicates`` would answer; failed: ``error`` as the error contract words it.
- ``DELETE /api/duplicates/jobs/<id>`` cancels it (the computation stops between two units of work and
  caches nothing); a finished job is left as it is.  An unknown id (never started, or dropped) is 404.

Jobs run in a background thread each; computations of one version wait for each other (the version's
``DuplicateCache`` holds one lock), a queued job says ``queued``.  At most ``MAX_JOBS`` are kept: the oldest
finished ones are dropped first, and a start while ``MAX_JOBS`` are running is 503 busy.  Starting and
cancelling a job change nothing in the index: they need no write key (web/auth.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict

from flask import Blueprint, current_app, jsonify, request, url_for

from imgsearch.search.duplicates.cache import report_key
from imgsearch.search.duplicates.groups import check_options
from imgsearch.search.duplicates.progress import DuplicatesProgress
from imgsearch.search.errors import DuplicatesCancelledError, ImgsearchError, quote
from imgsearch.web.api import duplicate_options, duplicates_json, duplicates_window, engine
from imgsearch.web.errors import ApiError, status_of

log = logging.getLogger(__name__)

duplicates_jobs = Blueprint("duplicates_jobs", __name__, url_prefix="/api/duplicates/jobs")

MAX_JOBS = 16  # jobs kept (finished ones dropped oldest first), and running at once
STATES = ("running", "done", "cancelled", "failed")


class DuplicatesJob:
    """One computation of a version's duplicate report, in its own thread; its state read by any request."""

    def __init__(self, eng, threshold: float, keep: str, keypoints: bool):
        self.id = uuid.uuid4().hex
        self.engine, self.options = eng, (threshold, keep, keypoints)
        self.key = (eng.generation, *report_key(eng, threshold, keep, keypoints))
        self.state = "running"
        self.progress = ("queued", 0, 0)  # (stage, done, total), replaced whole so a reader sees one of them
        self.report = None
        self.error: dict | None = None
        self.cancel = threading.Event()
        self._lock = threading.Lock()  # state changes: a cancel and the thread's end never cross
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        cached = self.engine.duplicate_reports.cached(self.engine, *self.options)
        if cached is not None:  # nothing to compute: done at once
            self.report, self.state, self.progress = cached, "done", (None, 0, 0)
            return
        self.thread = threading.Thread(target=self._run, name=f"duplicates-job-{self.id[:8]}", daemon=True)
        self.thread.start()

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress = (stage, done, total)

    def _run(self) -> None:
        try:
            report = self.engine.duplicates(*self.options, progress=DuplicatesProgress(
                self._on_progress, self.cancel, bars=False))
        except DuplicatesCancelledError:
            self._end("cancelled")
        except ImgsearchError as exc:  # a damaged shard, say: the contract's code and words
            status = status_of(exc)
            log.warning("duplicates job %s failed: %s", self.id, exc)
            self._end("failed", error={"code": status[1] if status else "internal_error", "message": str(exc)})
        except Exception:  # a bug: logged with its traceback, the client gets no server internals
            log.exception("duplicates job %s failed", self.id)
            self._end("failed", error={"code": "internal_error",
                                       "message": "finding duplicates failed; the server log says why"})
        else:
            self._end("done", report=report)

    def _end(self, state: str, report=None, error: dict | None = None) -> None:
        with self._lock:
            if self.state == "running":  # a job cancelled meanwhile stays cancelled
                self.report, self.error, self.state = report, error, state

    def stop(self) -> None:
        """Cancel: the thread stops at its next unit of work and caches nothing; a finished job is left alone."""
        with self._lock:
            if self.state == "running":
                self.cancel.set()
                self.state = "cancelled"

    def to_json(self, offset: int, limit: int, started: float) -> dict:
        state, (stage, done, total) = self.state, self.progress
        threshold, keep, keypoints = self.options
        out = {"id": self.id, "state": state, "stage": stage, "done": done, "total": total,
               "threshold": threshold, "keep": keep, "keypoints": keypoints, "generation": self.key[0],
               "url": url_for("duplicates_jobs.job", job_id=self.id)}
        if state == "done":
            out["result"] = duplicates_json(self.report, offset, limit, started)
        if state == "failed":
            out["error"] = self.error
        return out


class DuplicatesJobs:
    """The app's jobs, by id, oldest first."""

    def __init__(self, max_jobs: int = MAX_JOBS):
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, DuplicatesJob] = OrderedDict()
        self._threads: list[threading.Thread] = []  # every job thread not yet ended, cancelled ones included
        self._lock = threading.Lock()

    def start(self, eng, threshold, keep, keypoints: bool) -> DuplicatesJob:
        threshold, keep = check_options(threshold, keep)  # the defaults resolved: one key per computation
        key = (eng.generation, *report_key(eng, threshold, keep, bool(keypoints)))  # marks changed: a new job
        with self._lock:
            for job in self._jobs.values():
                if job.key == key and job.state in ("running", "done"):
                    return job
            # a cancelled job's thread counts until it ends (it may wait for another computation first): starts
            # and cancels in a loop never pile up threads
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) >= self.max_jobs:
                raise ApiError(503, "busy", f"{len(self._threads)} duplicates jobs are running or stopping; "
                                            "cancel one (DELETE /api/duplicates/jobs/ID) or wait for one to "
                                            "finish", headers={"Retry-After": "10"})
            job = DuplicatesJob(eng, threshold, keep, bool(keypoints))
            job.start()
            if job.thread is not None:
                self._threads.append(job.thread)
            self._jobs[job.id] = job
            for old in [j for j in self._jobs.values() if j.state != "running"]:
                if len(self._jobs) <= self.max_jobs:
                    break
                del self._jobs[old.id]
            return job

    def get(self, job_id: str) -> DuplicatesJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "unknown_job", f"no duplicates job {quote(job_id)} on this server (the last "
                                               f"{self.max_jobs} are kept): start one with POST /api/duplicates/jobs")
        return job

    def cancel(self, job_id: str) -> DuplicatesJob:
        job = self.get(job_id)
        job.stop()
        return job


@duplicates_jobs.record_once
def _install(state) -> None:
    state.app.extensions["imgsearch_duplicates_jobs"] = DuplicatesJobs()


def _jobs() -> DuplicatesJobs:
    return current_app.extensions["imgsearch_duplicates_jobs"]


@duplicates_jobs.post("")
def start():
    """Start finding duplicates (or reuse the job already doing it): 202 running, 200 done."""
    started = time.perf_counter()
    try:
        body = request.get_json(silent=True, force=True) if request.get_data() else {}
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object such as {\"threshold\": 0.9, "
                                            "\"keep\": \"largest\", \"keypoints\": true}, or empty for the defaults")
    options, (offset, limit) = duplicate_options(body), duplicates_window()  # all checked before a job starts
    job = _jobs().start(engine(), *options)
    response = jsonify(job.to_json(offset, limit, started))
    response.status_code = 200 if job.state == "done" else 202
    response.headers["Location"] = url_for("duplicates_jobs.job", job_id=job.id)
    return response


@duplicates_jobs.get("/<job_id>")
def job(job_id: str):
    """A job's state and progress; once done, a page of its groups."""
    started = time.perf_counter()
    found = _jobs().get(job_id)
    offset, limit = duplicates_window()
    return jsonify(found.to_json(offset, limit, started))


@duplicates_jobs.delete("/<job_id>")
def cancel(job_id: str):
    """Cancel a running job; a finished one is answered as it is."""
    started = time.perf_counter()
    found = _jobs().cancel(job_id)
    return jsonify(found.to_json(*duplicates_window(), started))
