"""Which part of a ranking a query is answered with: ``k`` results from rank ``offset``, only those
scoring at least ``min_score``, never a rank past ``MAX_K``.

``min_score`` is met by growing the search, not by FAISS range search: the first search asks for
``FIRST_DEPTH`` (plus the offset) neighbours, each next one four times more, until the last score
is below ``min_score``, the index has no more, or rank ``MAX_K`` is reached.  That works the same on
every index type (flat, IVF, HNSW, on a GPU) and for head-aware scores, and a few small searches
cost less than one of MAX_K when the cut-off is high.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from imgsearch.search.query.numbers import integer_field, number_field

MAX_K = 1000  # the deepest rank served
DEFAULT_K = 10  # results when neither k nor min_score is given
FIRST_DEPTH = 64  # neighbours the first search for a min_score asks for


@dataclass(frozen=True)
class Window:
    """Ranks ``offset`` .. ``offset + k - 1`` of the results scoring at least ``min_score`` (None: all)."""

    k: int
    offset: int = 0
    min_score: float | None = None

    @property
    def depth(self) -> int:
        """How many of the best results the window needs, at most MAX_K."""
        return min(self.offset + self.k, MAX_K)

    def cut(self, ranked: Sequence) -> list:
        """The window of ``ranked`` (best first, each with a ``score``)."""
        if self.min_score is not None:
            ranked = [h for h in ranked if h.score >= self.min_score]
        return list(ranked[self.offset:self.depth])


def check_k(k, *, text: bool = False) -> int:
    """``k`` as an int from 1 to MAX_K (``text``: also its text, as a form or the command line sends it)."""
    return integer_field(k, "k", 1, MAX_K, text=text)


def check_min_score(min_score, *, text: bool = False) -> float | None:
    if min_score is None or (text and min_score == ""):
        return None
    return number_field(min_score, "min_score", -1, 1, " (a cosine score)", text=text)


def check_offset(offset, *, text: bool = False) -> int:
    """Results past rank MAX_K are never served, so an offset is below it."""
    return integer_field(offset, "offset", 0, MAX_K - 1, text=text)


def window(k=None, offset=0, min_score=None) -> Window:
    """The checked window; ``k`` None: DEFAULT_K, or with ``min_score`` every result up to rank MAX_K."""
    min_score = check_min_score(min_score)
    offset = check_offset(offset)
    if k is None:
        k = DEFAULT_K if min_score is None else MAX_K
    return Window(check_k(k), offset, min_score)


def id_set(ids) -> set[int]:
    """None, one id or several, as a set."""
    if ids is None:
        return set()
    return {int(ids)} if isinstance(ids, (int, np.integer)) else {int(i) for i in ids}


def ranked(search: Callable[[int], list], win: Window) -> list:
    """The window of the ranking ``search(n)`` gives (its best ``n`` results, fewer if there are no more)."""
    if win.min_score is None:
        return win.cut(search(win.depth))
    want = min(win.depth, win.offset + FIRST_DEPTH)
    while True:
        hits = search(want)
        if want >= win.depth or len(hits) < want or hits[-1].score < win.min_score:
            return win.cut(hits)
        want = min(win.depth, want * 4)
