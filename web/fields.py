"""Reading a request's scalar fields (form or JSON): integers, switches, the result window, the strategy of
several examples and the filter; each bad value a 400 that says what to send."""

from __future__ import annotations

import json

from flask import current_app

from imgsearch.search.engine import MAX_K
from imgsearch.search.errors import InvalidInputError, quote
from imgsearch.search.query.examples import check_strategy
from imgsearch.search.query.filters import parse_filter
from imgsearch.search.query.window import check_min_score
from imgsearch.web.errors import ApiError


def parse_bool(raw, name: str, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    value = str(raw).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ApiError(400, f"invalid_{name}", f"{name} must be true or false, got {quote(raw)}")


def parse_int(raw, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    bad = ApiError(400, f"invalid_{name}", f"{name} must be an integer between {low} and {high}, got {quote(raw)}")
    if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
        raise bad
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise bad from None
    if not low <= value <= high:
        raise bad
    return value


def parse_k(raw, default: int | None = None) -> int:
    return parse_int(raw, "k", current_app.config["DEFAULT_K"] if default is None else default, 1, MAX_K)


def parse_window(fields: dict) -> tuple[int, int, float | None]:
    """(k, offset, min_score) of a search; with min_score, k defaults to every result reaching it."""
    raw = fields.get("min_score")
    min_score = None
    if raw is not None and raw != "":
        try:
            min_score = check_min_score(float(raw) if isinstance(raw, str) else raw)
        except (ValueError, InvalidInputError):
            raise ApiError(400, "invalid_min_score", f"min_score must be a number from -1 to 1 (a cosine score), "
                                                     f"got {quote(raw)}") from None
    k = parse_k(fields.get("k"), None if min_score is None else MAX_K)
    return k, parse_int(fields.get("offset"), "offset", 0, 0, MAX_K - 1), min_score


def parse_strategy(raw) -> str:
    try:
        return check_strategy("rocchio" if raw in (None, "") else raw)
    except InvalidInputError as exc:
        raise ApiError(400, "invalid_strategy", str(exc)) from None


def parse_filter_field(raw):
    """``filter``: a JSON object (in a multipart form, its JSON text), ``search/filters.py``; None if absent."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_filter", "filter must be a JSON object such as {\"label\": [\"cats\"]}, "
                                                  f"got {quote(raw)}") from None
    return parse_filter(raw)  # InvalidFilterError: 400 invalid_filter


def filter_fields(eng, flt) -> dict:
    """What a filtered answer says about its filter: as read, how many images it selects, and a note
    when none (an empty result list, not an error: the filter is valid, the index has no such image)."""
    if flt is None:
        return {}
    matched = eng.matching(flt)  # an unknown label fails here, before an upload is embedded
    note = {"note": "no indexed image matches the filter"} if matched == 0 else {}
    return {"filter": flt.describe(), "matched": matched, **note}
