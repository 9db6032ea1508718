"""Progress where people wait: every step that can take more than a few seconds says so.

``step(description)`` wraps one long call that cannot count its work (preparing a model, building or
tuning a FAISS index): on a terminal, a line with the description and a ticking clock, left on screen
with the time it took; elsewhere (a log file, a test) one INFO log line.  ``bar(...)`` is a tqdm bar
for work that can count (images, pairs, queries), shown on a terminal only.  ``enabled=False`` (for
example ``IndexConfig(progress=False)``) silences both.  Both write to ``quiet.terminal()``: the stderr
people see, also while the libraries' output is captured around the step.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from imgsearch.indexer.quiet import terminal

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between refreshes of a step's clock
_said = threading.local()  # a step that said its line off a terminal: the steps inside it only log theirs


def _on_terminal() -> bool:
    try:
        return terminal().isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool | None = None,
        **kwargs):
    """A tqdm bar on stderr over ``iterable`` (or counting to ``total``); None ``enabled``: on a terminal only."""
    from tqdm.auto import tqdm

    shown = _on_terminal() if enabled is None else enabled and _on_terminal()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not shown, file=terminal(),
                dynamic_ncols=True, **kwargs)


@contextmanager
def step(description: str, enabled: bool | None = None, leave: bool = True, say: bool = False) -> Iterator[None]:
    """Say that ``description`` is under way until the block ends (see the module's docstring); ``leave``:
    keep the line, with the time it took, once done.  ``say``: off a terminal too, one line on stderr
    (not only a log line): for a wait people did not ask for, such as preparing a model on the first run."""
    if enabled is False:
        yield
        return
    if not _on_terminal():
        if say and not getattr(_said, "on", False):
            print(f"{description} ...", file=terminal(), flush=True)
            _said.on = True
            try:
                yield
            finally:
                _said.on = False
            return
        log.info("%s ...", description)
        yield
        return
    from tqdm.auto import tqdm

    line = tqdm(total=None, desc=description, bar_format="{desc} ({elapsed})", file=terminal(), leave=leave)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(TICK):
            line.refresh()

    ticker = threading.Thread(target=tick, name="imgsearch-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        line.close()
