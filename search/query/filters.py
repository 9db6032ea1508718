"""Filters on stored metadata: what a query may ask (``parse_filter``, ``parse_where``) and the rows it selects.

A filter is a conjunction of conditions on the shards' columns: ``label``,
``path_prefix``, ``width``, ``height`` and the columns captured at indexing
since format 4 (``file_size``, ``mtime``, ``taken``, ``camera_make``,
``camera_model``; null in shards written before, and a null never matches a
condition on its column).  Within one field, several values mean any of them.

JSON (``"filter"`` of /api/search)::

    {"label": ["cats", "dogs"], "path_prefix": "/photos/2021/",
     "width": {">=": 640}, "taken": {">=": "2020-01-01", "<": "2021-01-01"},
     "camera_make": "Canon"}

The command line (``--where``, repeatable, all must hold)::

    label=cats,dogs   path_prefix=/photos/   width>=640   taken>=2020-01-01   file_size<1000000

Within a field, several operators all hold (``{"width": {">=": 64, "<": 100}}``); each field and operator
once (the command line refuses a repeat rather than keep one of them); conditions that contradict
(``{"width": {"=": [64], "<": 10}}``) are evaluated, and select nothing.  Times (``mtime``, ``taken``) are
ISO 8601 dates or date-times only (``TIME_FORMS``; UTC when no zone is given): a number is never read as
a time.  ``Filter.describe`` is the one echo of what was applied, in the JSON form, read back to the same
filter.  ``taken`` is the camera's clock
(``indexer/inputs/metadata.py``).  The rows a filter selects are a boolean
mask over the version's rows, computed from columns held as arrays
(``MetadataColumns``), never per row in Python; the search itself is in
``search/query/filter_index.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imgsearch.indexer.errors import quote
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.search.errors import InvalidFieldError, InvalidFilterError, UnknownLabelError
from imgsearch.search.query.numbers import number_field

TEXT_FIELDS = ("label", "camera_make", "camera_model")  # "=" one of the values
NUMBER_FIELDS = ("width", "height", "file_size")
TIME_FIELDS = ("mtime", "taken")
FIELDS = ("label", "path_prefix", "width", "height", "file_size", "mtime", "taken", "camera_make", "camera_model")
COMPARISONS = (">=", "<=", ">", "<")
OPERATORS = ("=",) + COMPARISONS
COLUMNS = ("label", "path", "width", "height", "file_size", "mtime", "taken", "camera_make", "camera_model")
MAX_VALUES = 1000  # values one field may list
MAX_NUMBER = 1e18  # a numeric bound's size either way: beyond any width, height or file size
_WHERE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|=|>|<)(.*)\Z", re.S)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # one of OPERATORS
    value: tuple | float  # "=": the values (any of them); a comparison: the bound (times: seconds since 1970)


@dataclass(frozen=True)
class Filter:
    """All ``conditions`` must hold, at most one per field and operator, in ``FIELDS`` and ``OPERATORS``
    order (hashable: a version caches the rows of the filters it was asked).  Conditions that contradict
    (``width = 64`` and ``width < 10``) are kept and evaluated: such a filter selects nothing."""

    conditions: tuple[Condition, ...]

    def describe(self) -> dict:
        """The filter as applied, in the JSON shape ``parse_filter`` reads back to this same filter: a field
        with only ``=`` as its list of values, otherwise an object of every operator; numbers as given
        (integers as integers), times in ISO 8601 UTC (``2020-01-01T00:00:00Z``)."""
        by_field: dict[str, dict] = {}
        for c in self.conditions:
            shown = [_shown(c.field, v) for v in c.value] if c.op == "=" else _shown(c.field, c.value)
            by_field.setdefault(c.field, {})[c.op] = shown
        return {field: ops["="] if list(ops) == ["="] else ops for field, ops in by_field.items()}


def _shown(field: str, value):
    if field in TIME_FIELDS:
        return _iso(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _fields_message() -> str:
    return f"valid fields: {', '.join(FIELDS)}; operators: {' '.join(OPERATORS)}"


# ISO 8601, extended form: a date, or a date-time to the minute, second or microsecond, with Z, an offset or
# no zone (UTC); a number, or a date without its dashes, is never read as a time
ISO_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
                  r"(?:Z|[+-][0-9]{2}:[0-9]{2})?)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FIRST, _LAST = datetime(1, 1, 2, tzinfo=timezone.utc), datetime(9999, 12, 30, tzinfo=timezone.utc)
TIME_FORMS = "2025-01-31, 2025-01-31T12:00, 2025-01-31T12:00:00, 2025-01-31T12:00:00Z or 2025-01-31T12:00:00+02:00"


def _time(raw, field: str) -> float:
    """An ISO 8601 date or date-time (UTC when it gives no zone) as seconds since 1970, whole microseconds."""
    if isinstance(raw, str) and ISO_PATTERN.fullmatch(raw.strip()):
        try:
            when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:  # a day or hour that does not exist (2025-02-30, 25:00)
            pass
        else:
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            if _FIRST <= when <= _LAST:  # an offset may carry a day past year 1 or 9999 in UTC
                return ((when - _EPOCH) // timedelta(microseconds=1)) / 1e6
    raise InvalidFilterError(f"{field} needs an ISO 8601 date or date-time ({TIME_FORMS}; UTC when no zone is "
                             f"given), got {quote(raw)}")


def _iso(seconds: float) -> str:
    when = _EPOCH + timedelta(microseconds=round(seconds * 1e6))
    return when.isoformat().replace("+00:00", "Z")


def _number(raw, field: str) -> float:
    try:
        return number_field(raw, field, -MAX_NUMBER, MAX_NUMBER)
    except InvalidFieldError:
        raise InvalidFilterError(f"{field} needs a finite number such as 640 (at most {MAX_NUMBER:.0e} either "
                                 f"way), got {quote(raw)}") from None


def _bound(field: str, raw) -> float:
    return _time(raw, field) if field in TIME_FIELDS else _number(raw, field)


def _values(field: str, raw) -> tuple:
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    if not items:
        raise InvalidFilterError(f"{field} needs at least one value")
    if len(items) > MAX_VALUES:
        raise InvalidFilterError(f"{field} lists {len(items)} values, at most {MAX_VALUES} are allowed")
    if field in TEXT_FIELDS or field == "path_prefix":
        bad = [v for v in items if not isinstance(v, str)]
        if bad:
            raise InvalidFilterError(f"{field} needs text values, got {quote(bad[0])}")
        if field == "path_prefix" and any(v == "" for v in items):
            raise InvalidFilterError("path_prefix needs a non-empty prefix such as /photos/")
        return tuple(dict.fromkeys(items))
    return tuple(dict.fromkeys(_bound(field, v) for v in items))


def _condition(field: str, op: str, raw) -> Condition:
    if field not in FIELDS:
        raise InvalidFilterError(f"unknown filter field {quote(field)}; {_fields_message()}")
    if op not in OPERATORS:
        raise InvalidFilterError(f"unknown operator {quote(op)} for {field}; {_fields_message()}")
    if op != "=" and (field in TEXT_FIELDS or field == "path_prefix"):
        raise InvalidFilterError(f"{field} takes only '=' (one or several values), not {op!r}")
    if op == "=":
        return Condition(field, op, _values(field, raw))
    if isinstance(raw, (list, tuple)):
        raise InvalidFilterError(f"{field} {op} takes one bound, got {quote(raw)}")
    return Condition(field, op, _bound(field, raw))


def _ordered(conditions: list[Condition]) -> Filter | None:
    """The one normal form: fields in FIELDS order, operators in OPERATORS order (each pair once)."""
    key = {(f, o): i for i, (f, o) in enumerate((f, o) for f in FIELDS for o in OPERATORS)}
    return Filter(tuple(sorted(conditions, key=lambda c: key[c.field, c.op]))) if conditions else None


def parse_filter(raw) -> Filter | None:
    """The JSON form (see the module's docstring); None or {} is no filter."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidFilterError(f"filter must be a JSON object such as {{\"label\": [\"cats\"]}}, got {quote(raw)}")
    conditions = []
    for field, spec in raw.items():
        if field not in FIELDS:
            raise InvalidFilterError(f"unknown filter field {quote(field)}; {_fields_message()}")
        if isinstance(spec, dict):
            if not spec:
                raise InvalidFilterError(f"{field} needs a bound such as {{\">=\": 100}}")
            conditions += [_condition(field, op, value) for op, value in spec.items()]
        else:
            conditions.append(_condition(field, "=", spec))
    return _ordered(conditions)


def parse_where(expressions: Sequence[str]) -> Filter | None:
    """The command line's form: ``field=v1,v2``, ``field>=x``, ``field<=x``, ``field>x``, ``field<x``; each
    field and operator once (every expression must hold; a list of values means any of them)."""
    conditions: dict[tuple[str, str], tuple[str, Condition]] = {}
    for text in expressions:
        found = _WHERE.match(text)
        if not found:
            raise InvalidFilterError(f"cannot read --where {quote(text)}: write FIELD OP VALUE such as "
                                     f"label=cats,dogs or 'taken>=2020-01-01'; {_fields_message()}")
        field, op, value = found.group(1), found.group(2), found.group(3).strip()
        if value == "":
            raise InvalidFilterError(f"--where {quote(text)} has no value after {op!r}")
        if op == "=" and field != "path_prefix":  # a path prefix may hold commas
            condition = _condition(field, op, [v.strip() for v in value.split(",")])
        else:
            condition = _condition(field, op, value)
        if (field, op) in conditions:
            first = conditions[field, op][0]
            how = (f"list the values once, any of them: {field}=a,b" if op == "=" and field != "path_prefix" else
                   "give it once" if op == "=" else "give one bound")
            raise InvalidFilterError(f"--where gives {field}{op} twice ({quote(first)} and {quote(text)}): {how}")
        conditions[field, op] = (text, condition)
    return _ordered([c for _, c in conditions.values()])


class MetadataColumns:
    """The filterable columns of one version's rows, as arrays in the engine's row order.

    Texts with few distinct values (labels, cameras) are dictionary codes, so
    a condition is a lookup table indexed by code; numbers and times are
    float64 with NaN for null (NaN fails every comparison); paths stay one
    Arrow array for ``starts_with``.
    """

    def __init__(self, table: pa.Table):
        self.n = table.num_rows
        self.codes, self.dictionaries = {}, {}
        for name in TEXT_FIELDS:
            encoded = pc.dictionary_encode(table.column(name).combine_chunks())
            if name == "label":  # stored texts of any bytes: compared as the file system's names
                words = texts_of(pa.table({"label": encoded.dictionary}), "label")
            else:
                words = encoded.dictionary.to_pylist()
            self.dictionaries[name] = {w: i for i, w in enumerate(words)}
            self.codes[name] = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        self.paths = table.column("path").combine_chunks()
        self.numbers = {name: table.column(name).combine_chunks().cast(pa.float64()).fill_null(np.nan)
                        .to_numpy(zero_copy_only=False) for name in NUMBER_FIELDS + TIME_FIELDS}

    def labels(self) -> list[str]:
        return sorted(self.dictionaries["label"])

    def mask(self, flt: Filter) -> np.ndarray:
        """(n,) bool: the rows every condition holds for."""
        mask = np.ones(self.n, bool)
        for c in flt.conditions:
            mask &= self._condition(c)
        return mask

    def _condition(self, c: Condition) -> np.ndarray:
        if c.field in TEXT_FIELDS:
            known = self.dictionaries[c.field]
            if c.field == "label" and (missing := [v for v in c.value if v not in known]):
                shown = ", ".join(quote(v) for v in self.labels()[:20]) or "none"
                more = f" (and {len(known) - 20} more)" if len(known) > 20 else ""
                raise UnknownLabelError(f"no indexed image has label {quote(missing[0])}; the labels are: "
                                        f"{shown}{more}")
            table = np.zeros(len(known) + 1, bool)  # the last entry: null (code -1)
            table[[known[v] for v in c.value if v in known]] = True
            return table[self.codes[c.field]]
        if c.field == "path_prefix":
            hit = np.zeros(self.n, bool)
            for prefix in c.value:
                hit |= pc.starts_with(self.paths, prefix).to_numpy(zero_copy_only=False)
            return hit
        column = self.numbers[c.field]
        if c.op == "=":
            return np.isin(column, np.array(c.value, np.float64))
        return {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}[c.op](column, c.value)


def as_filter(value) -> Filter | None:
    """A ``Filter`` from what a caller passes: a Filter, the JSON form (a dict), ``--where`` strings, or None."""
    if value is None or isinstance(value, Filter):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return parse_where(value)
    return parse_filter(value)
