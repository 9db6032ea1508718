"""Reading a request's fields that are not a query's options (integers such as ``top`` and ``limit``,
switches), its JSON body (``StrictJSONProvider``: the one strict number rule, so ``1e400``, ``NaN``, a
400-digit integer or a key given twice is a 400 ``invalid_json`` that says so), and what an answer says of
its filter.  A query's options (k, offset, min_score, head, box,
filter, strategy) are read once, by ``Query.from_fields`` (search/query/spec.py); each bad value a 400
that says what to send."""

from __future__ import annotations

from flask.json.provider import DefaultJSONProvider

from imgsearch.search.errors import InvalidFieldError, quote
from imgsearch.search.query.numbers import integer_field, loads
from imgsearch.web.errors import ApiError


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with request bodies read by ``search/query/numbers.py``'s ``loads``."""

    def loads(self, s, **kwargs):
        try:
            return loads(s)
        except InvalidFieldError as exc:  # not a ValueError to Flask: get_json(silent=True) must not hide it
            raise ApiError(400, "invalid_json", f"the JSON body: {exc}") from None


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
    """An integer field, or ``default`` when absent; a bad one is 400 ``invalid_<name>`` (InvalidFieldError)."""
    return default if raw is None or raw == "" else integer_field(raw, name, low, high)


def filter_fields(eng, flt) -> dict:
    """What a filtered answer says about its filter: as read, how many images it selects, and a note
    when none (an empty result list, not an error: the filter is valid, the index has no such image)."""
    if flt is None:
        return {}
    matched = eng.matching(flt)  # an unknown label fails here, before an upload is embedded
    note = {"note": "no indexed image matches the filter"} if matched == 0 else {}
    return {"filter": flt.describe(), "matched": matched, **note}
