"""The client's duplicates calls: groups found by a job on the server (polled, cancellable), the "not a
duplicate" marks, and removing a group's other members from the index.  ``SearchClient`` has them."""

from __future__ import annotations

import time
from typing import Sequence
from urllib.parse import quote

from imgsearch.search.client.replies import DuplicatesPage, RemoteDuplicatesJob, SearchAPIError
from imgsearch.search.client.replies import duplicates_job as _job
from imgsearch.search.errors import DuplicatesCancelledError


class DuplicatesCalls:
    """Mixed into ``SearchClient``: its ``_request`` and ``_parsed`` carry these calls."""

    def duplicates(self, threshold: float | None = None, keep: str | None = None, offset: int = 0,
                   limit: int = 20, keypoints: bool | None = None, progress=None, poll: float = 1.0) -> DuplicatesPage:
        """Groups of near-duplicates and exact copies, ``limit`` from ``offset``; ``threshold`` None: the
        server's default; ``keep``: largest (None), smallest, oldest or newest; ``keypoints`` None: the
        server's default (on), False: cosine scores only.  Found by a job on the server, polled at most every
        ``poll`` seconds: ``progress(stage, done, total)`` hears each answer; Ctrl-C cancels the job.
        A job cancelled by someone else raises DuplicatesCancelledError."""
        job = self.start_duplicates_job(threshold, keep, keypoints, offset=offset, limit=limit)
        wait = 0.05
        try:
            while job.state == "running":
                if progress is not None:
                    progress(job.stage, job.done, job.total)
                time.sleep(wait)
                wait = min(poll, 2 * wait)
                job = self.duplicates_job(job.id, offset=offset, limit=limit)
        except KeyboardInterrupt:
            self.cancel_duplicates_job(job.id)
            raise
        if job.state == "cancelled":
            raise DuplicatesCancelledError(f"duplicates job {job.id} was cancelled on the server; start it again")
        if job.state != "done" or job.result is None:
            error = job.error or {}
            raise SearchAPIError(200, str(error.get("code", "job_failed")), str(error.get("message", job.state)))
        if progress is not None:
            progress(job.stage, job.done, job.total)
        return job.result

    def start_duplicates_job(self, threshold: float | None = None, keep: str | None = None,
                             keypoints: bool | None = None, offset: int = 0, limit: int = 20) -> RemoteDuplicatesJob:
        """Start finding duplicates on the server (or join the job already at it): its state, a result if done."""
        body = _body(threshold=threshold, keep=keep, keypoints=keypoints)
        reply = self._request("POST", "/api/duplicates/jobs", json=body, params={"offset": offset, "limit": limit})
        return self._parsed(_job, reply)

    def duplicates_job(self, job_id: str, offset: int = 0, limit: int = 20) -> RemoteDuplicatesJob:
        """A job's state, stage, done and total; once done, ``result``: groups ``limit`` from ``offset``."""
        reply = self._request("GET", f"/api/duplicates/jobs/{quote(str(job_id), safe='')}",
                              params={"offset": offset, "limit": limit})
        return self._parsed(_job, reply)

    def cancel_duplicates_job(self, job_id: str) -> RemoteDuplicatesJob:
        """Cancel a job (a finished one is left as it is)."""
        return self._parsed(_job, self._request("DELETE", f"/api/duplicates/jobs/{quote(str(job_id), safe='')}"))

    def duplicate_marks(self) -> list[dict]:
        """The pairs marked "not a duplicate": ``ids`` (now; None: not indexed), ``marked_ids``, ``paths``."""
        return self._parsed(lambda b: [_object(m) for m in b["marks"]],
                            self._request("GET", "/api/duplicates/marks"))

    def mark_not_duplicates(self, ids: Sequence[int]) -> dict:
        """Mark every pair among ``ids`` (a pair, or a group's ids) "not a duplicate": later runs never group
        them; {"pairs", "changed", "total"}."""
        return self._parsed(_object, self._request("POST", "/api/duplicates/marks", json={"ids": list(ids)}))

    def unmark_not_duplicates(self, ids: Sequence[int]) -> dict:
        """Remove the marks of every pair among ``ids``; {"pairs", "changed", "total"}."""
        return self._parsed(_object, self._request("DELETE", "/api/duplicates/marks", json={"ids": list(ids)}))

    def remove_duplicates(self, keep: int, remove: Sequence[int]) -> dict:
        """Remove the ids in ``remove`` (a group's members other than ``keep``) from the index, never the files;
        {"removed", "keep", "count", "generation"}: the version the server serves after."""
        return self._parsed(_object, self._request("POST", "/api/duplicates/remove",
                                                   json={"keep": keep, "remove": list(remove)}))


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _body(**fields) -> dict:
    return {k: v for k, v in fields.items() if v is not None}
