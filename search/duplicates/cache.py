"""One version's duplicate reports, computed once per (threshold, keep, keypoints, marks) and shared by every caller.

A cancelled computation (``progress.DuplicatesProgress``) raises before anything is stored, so what the
cache holds is always a whole report.  ``cached`` answers without computing (a server's job reports a
result at once when there is one).
"""

from __future__ import annotations

import threading

from imgsearch.search.duplicates.groups import DuplicateReport, check_options, find_duplicates
from imgsearch.search.duplicates.marks import marks_stamp

CACHED_REPORTS = 8  # (threshold, keep, keypoints) reports a version keeps


def report_key(engine, threshold, keep, keypoints: bool) -> tuple:
    """(threshold, keep, keypoints, the marks file's stamp): marking or unmarking a pair is a new report."""
    return (*check_options(threshold, keep), bool(keypoints), marks_stamp(engine))


class DuplicateCache:
    """One engine's (one version's) reports by (threshold, keep, keypoints), and the keypoints found for them:
    a new version gets a new engine, and a new cache."""

    def __init__(self):
        self._reports: dict = {}
        self._lock = threading.Lock()
        self._matcher = None  # keypoints found for one report serve the next (another threshold, say)

    def cached(self, engine, threshold, keep, keypoints: bool = False) -> DuplicateReport | None:
        """The report if it was computed already, else None (InvalidInputError for bad options)."""
        return self._reports.get(report_key(engine, threshold, keep, keypoints))

    def get(self, engine, threshold, keep, keypoints: bool = False, progress=None) -> DuplicateReport:
        key = report_key(engine, threshold, keep, keypoints)
        with self._lock:  # requests asking together wait for one computation and share it
            report = self._reports.get(key)
            if report is None:
                if key[2] and self._matcher is None:
                    from imgsearch.search.duplicates.keypoints import KeypointMatcher

                    self._matcher = KeypointMatcher(engine)
                # stored only once whole: a cancelled run raises DuplicatesCancelledError before this
                report = find_duplicates(engine, *key[:3], matcher=self._matcher, progress=progress)
                self._reports[key] = report
                while len(self._reports) > CACHED_REPORTS:
                    self._reports.pop(next(iter(self._reports)))
            return report
