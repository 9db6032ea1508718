"""Numbers as callers send them, read strictly: the one parser for every integer and float a query takes
(``k``, ``offset``, ``min_score``, weights, ids, limits), from Python, JSON, a form, a query string or the
command line.  A value of any size, NaN or infinity is an ``InvalidFieldError`` naming the field and its
range, never an overflow."""

from __future__ import annotations

import math
import re

import numpy as np

from imgsearch.indexer.errors import quote
from imgsearch.search.errors import InvalidFieldError

_INTEGER = re.compile(r"[+-]?\d{1,30}")  # text of an integer: digits only, and never thousands of them


def integer_field(raw, name: str, low: int, high: int, *, text: bool = True) -> int:
    """``raw`` as an integer from ``low`` to ``high``: an int, a float with no fraction (JSON's ``10.0``), or
    with ``text`` a string of digits; anything else, of any size, an ``InvalidFieldError`` that says the range."""
    bad = InvalidFieldError(name, f"{name} must be an integer between {low} and {high}, got {quote(raw)}")
    if isinstance(raw, (bool, np.bool_)):
        raise bad
    if isinstance(raw, (int, np.integer)):
        value = int(raw)
    elif isinstance(raw, (float, np.floating)) and math.isfinite(raw) and float(raw).is_integer():
        value = int(raw)
    elif text and isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        raise bad
    if not low <= value <= high:
        raise bad
    return value


def number_field(raw, name: str, low: float, high: float, what: str = "", *, text: bool = True) -> float:
    """``raw`` as a finite number from ``low`` to ``high`` (an int of any size is refused, not overflowed)."""
    bad = InvalidFieldError(name, f"{name} must be a number from {low:g} to {high:g}{what}, got {quote(raw)}")
    if isinstance(raw, (bool, np.bool_)):
        raise bad
    if text and isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            raise bad from None
    if not isinstance(raw, (int, float, np.integer, np.floating)):
        raise bad
    try:
        value = float(raw)
    except OverflowError:  # an int beyond a float's range
        raise bad from None
    if not (math.isfinite(value) and low <= value <= high):
        raise bad
    return value
