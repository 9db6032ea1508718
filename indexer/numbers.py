"""Numbers as callers send them, read strictly: the one parser of every integer and float taken from outside
(a URL path, a query string, a form, a JSON body, the command line, a Python caller).

One rule everywhere:

- an **integer** is a Python or NumPy int, a float with no fraction (JSON's ``10.0``), or text of ASCII digits
  with an optional sign (at most 30 digits; spaces around are ignored).  Never a bool, and never the texts
  ``"5.0"``, ``"1e3"``, ``"1_000"`` or digits of other scripts (``"٣"``);
- a **number** is an int or a float (not a bool), or text in decimal notation (``"0.5"``, ``"-1"``, ``"2e-3"``;
  not ``"nan"``, ``"inf"``, ``"0x10"`` or ``"1_0"``); it must be finite once read (``1e309`` reads as infinity:
  refused) and in the field's range; ``-0`` reads as ``0``;
- a value of any size is an ``InvalidFieldError`` that names the field and says its range, never an
  ``OverflowError``.

``loads`` reads JSON text under the same rule: ``NaN`` and ``Infinity``, a number beyond a float's range,
an integer beyond 64 bits (no field takes one) and an object giving one key twice are ``InvalidFieldError``
(field ``json``) saying what to change.  The command line takes the same rule through the click types of
``indexer/options.py``.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from imgsearch.indexer.errors import InvalidFieldError, quote

MAX_ID = 2**63 - 1  # the largest id, and the largest integer anything takes
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only, and never thousands of them
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,400}(?:\.[0-9]{0,400})?|\.[0-9]{1,400})(?:[eE][+-]?[0-9]{1,5})?")


def integer_field(raw, name: str, low: int, high: int, *, text: bool = True) -> int:
    """``raw`` as an integer from ``low`` to ``high`` (``text``: also a string of digits, as a form, a query
    string or the command line carries it); anything else, of any size, an ``InvalidFieldError``."""
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


def id_field(raw, name: str = "id", *, text: bool = True) -> int:
    """An image id: an integer from 0 to ``MAX_ID``, its text digits only, no sign (an unknown id is the
    caller's NotFoundError; a malformed or impossible one this ``InvalidFieldError``)."""
    if text and isinstance(raw, str) and raw.strip()[:1] in ("+", "-"):
        raise InvalidFieldError(name, f"{name} must be an integer between 0 and {MAX_ID} (digits only), got "
                                      f"{quote(raw)}")
    return integer_field(raw, name, 0, MAX_ID, text=text)


def number_field(raw, name: str, low: float, high: float, what: str = "", *, text: bool = True,
                 above_low: bool = False) -> float:
    """``raw`` as a finite number from ``low`` (``above_low``: above it) to ``high``."""
    low_text = f"above {low:g} and at most" if above_low else f"from {low:g} to"
    bad = InvalidFieldError(name, f"{name} must be a number {low_text} {high:g}{what}, got {quote(raw)}")
    if isinstance(raw, (bool, np.bool_)):
        raise bad
    if text and isinstance(raw, str):
        if not _NUMBER.fullmatch(raw.strip()):
            raise bad
        raw = float(raw.strip())  # the pattern leaves only what float() reads; 1e99999 reads as inf
    if not isinstance(raw, (int, float, np.integer, np.floating)):
        raise bad
    try:
        value = float(raw)
    except OverflowError:  # an int beyond a float's range
        raise bad from None
    if not (math.isfinite(value) and low <= value <= high) or (above_low and value == low):
        raise bad
    return value + 0.0  # -0.0 reads as 0.0


def _constant(name: str):
    raise InvalidFieldError("json", f"{name} is not a JSON number: send a finite number, or leave the field out")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidFieldError("json", f"the number {quote(text, 40)} is beyond a float's range "
                                        "(about 1.8e308): send a smaller one")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_ID:
        raise InvalidFieldError("json", f"the integer {quote(text, 40)} ({len(text.lstrip('-'))} digits) is "
                                        f"beyond 64 bits: integers go from -{MAX_ID} to {MAX_ID}")
    return int(text)


def _object(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise InvalidFieldError("json", f"the key {quote(twice, 60)} is given twice in one object: give it once")
    return out


def loads(text):
    """JSON text (str or bytes) as Python values under the rule above; malformed JSON is json's ValueError."""
    return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int, object_pairs_hook=_object)
