"""What a duplicates computation says while it runs, and when it must stop: progress by stage, a cancel flag.

``find_duplicates(..., progress=DuplicatesProgress(on_progress, cancel))`` reports
``on_progress(stage, done, total)`` through each of ``STAGES``, in order:

* ``pairs``: the images whose neighbours were searched (an exact index: the rows of its blocks);
* ``verifying``: the candidate pairs the verifier was asked about (with keypoints only);
* ``grouping``: the connected components split into groups by the keeper check.

``cancel`` (a ``threading.Event``) is checked between units of work: once set, the computation raises
``DuplicatesCancelledError`` and nothing of it is cached.  On a terminal each stage is also a tqdm bar
(``indexer/progress.py``'s ``bar``, silent elsewhere); ``bars=False`` leaves them out (a server's job).
"""

from __future__ import annotations

import threading
from typing import Callable

from imgsearch.indexer.progress import bar
from imgsearch.search.errors import DuplicatesCancelledError

STAGES = ("pairs", "verifying", "grouping")
_BARS = {"pairs": ("finding pairs", "image"), "verifying": ("verifying pairs", "pair"),
         "grouping": ("grouping", "component")}


class DuplicatesProgress:
    """Progress of one duplicates computation: the stage, done and total, reported on every change."""

    def __init__(self, on_progress: Callable[[str, int, int], None] | None = None,
                 cancel: threading.Event | None = None, bars: bool = True):
        self.on_progress, self.cancel, self.bars = on_progress, cancel, bars
        self.stage: str | None = None
        self.done = self.total = 0
        self._bar = None

    def start(self, stage: str, total: int, words: str | None = None) -> None:
        """A new stage of ``total`` units (the previous one ends); raises if cancelled.  ``words``: the bar's
        description (default: the stage's)."""
        self.close()
        self.check()
        self.stage, self.done, self.total = stage, 0, int(total)
        if self.bars:
            desc, unit = _BARS[stage]
            self._bar = bar(total=self.total, desc=words or desc, unit=unit, leave=False)
        self._report()

    def more(self, units: int) -> None:
        """``units`` more to do in this stage: its total grows, what is done stays (a stage whose work is
        known in steps: the verifying stage counts corners first, then judges the pairs they pick)."""
        self.total += int(units)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()
        self._report()
        self.check()

    def advance(self, units: int = 1) -> None:
        """``units`` more of this stage done; raises if cancelled."""
        self.done = min(self.total, self.done + int(units))
        if self._bar is not None:
            self._bar.update(units)
        self._report()
        self.check()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.close()
            raise DuplicatesCancelledError("finding duplicates was cancelled; nothing was cached: start it again "
                                           "to get the groups")

    def close(self) -> None:
        """Take the stage's bar off the screen (a finished or failed run)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stage, self.done, self.total)
