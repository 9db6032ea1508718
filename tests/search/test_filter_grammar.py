"""One filter grammar (issue 30, item 8): conditions that contradict are evaluated (they select nothing) and
echoed whole; the command line refuses a field and operator given twice rather than apply one and echo
another; times are ISO 8601 only, a number is never read as a date; the echo is the one normal form the
engine applied, read back to the same filter.  Hypothesis over the grammar, against a plain per-row
evaluation; then Python (SearchEngine), the command line and HTTP on the shared fake-model index."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsearch.search.errors import InvalidFilterError
from imgsearch.search.query.filters import (
    COMPARISONS,
    MetadataColumns,
    NUMBER_FIELDS,
    TIME_FIELDS,
    parse_filter,
    parse_where,
)
from tests.helpers import fake_model_env

FUZZ = dict(deadline=None, derandomize=True, database=None, max_examples=200)
N = 60
_rng = np.random.default_rng(5)
ROWS = {
    "label": _rng.choice(["cats", "dogs", "owls"], N).tolist(),
    "path": [f"/p/{'ab'[i % 2]}/{i}.jpg" for i in range(N)],
    "width": _rng.integers(1, 20, N).tolist(),
    "height": [None if i % 7 == 0 else int(x) for i, x in enumerate(_rng.integers(1, 20, N))],
    "file_size": _rng.integers(100, 120, N).tolist(),
    "mtime": [1_577_836_800 + int(d) * 86_400 for d in _rng.integers(0, 10, N)],  # 2020-01-01 + 0..9 days
    "taken": [None if i % 5 == 0 else 1_577_836_800.0 + int(d) * 3600 for i, d in enumerate(_rng.integers(0, 48, N))],
    "camera_make": [None] * N, "camera_model": [None] * N,
}
COLUMNS = MetadataColumns(pa.table(ROWS))
OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(field: str):
    if field in TIME_FIELDS:
        return st.integers(1_577_836_800 - 86_400, 1_577_836_800 + 11 * 86_400).map(
            lambda s: st.sampled_from([_iso(s), _iso(s)[:10], _iso(s)[:-1], _iso(s)[:-1] + "+00:00"])).flatmap(
            lambda x: x)
    if field == "file_size":
        return st.integers(95, 125)
    return st.one_of(st.integers(0, 21), st.floats(0, 21, allow_nan=False).map(lambda x: round(x, 1)))


@st.composite
def filters(draw) -> dict:
    """A JSON filter: labels and prefixes as lists, numbers and times with any of '=' and the comparisons."""
    out: dict = {}
    if draw(st.booleans()):
        out["label"] = draw(st.lists(st.sampled_from(["cats", "dogs", "owls"]), min_size=1, max_size=3))
    if draw(st.booleans()):
        out["path_prefix"] = draw(st.lists(st.sampled_from(["/p/a/", "/p/b/", "/p/", "/q/"]), min_size=1, max_size=2))
    for field in draw(st.lists(st.sampled_from(NUMBER_FIELDS + TIME_FIELDS), unique=True, max_size=3)):
        ops = draw(st.lists(st.sampled_from(("=",) + COMPARISONS), unique=True, min_size=1, max_size=3))
        spec = {op: draw(st.lists(_value(field), min_size=1, max_size=3)) if op == "=" else draw(_value(field))
                for op in ops}
        out[field] = spec["="] if list(spec) == ["="] and draw(st.booleans()) else spec
    return out


def _seconds(field, v):
    if field not in TIME_FIELDS:
        return float(v)
    v = v if v[10:] else v + "T00:00:00Z"
    return datetime.fromisoformat(v.replace("Z", "+00:00")).replace(tzinfo=timezone.utc).timestamp()


def _by_hand(raw: dict) -> np.ndarray:
    """The filter's meaning, row by row: every field and operator holds; a list is any of; null never matches."""
    keep = np.ones(N, bool)
    for field, spec in raw.items():
        spec = spec if isinstance(spec, dict) else {"=": spec}
        for op, value in spec.items():
            for row in range(N):
                if field == "path_prefix":
                    ok = any(ROWS["path"][row].startswith(p) for p in value)
                elif field == "label":
                    ok = ROWS["label"][row] in value
                elif ROWS[field][row] is None:
                    ok = False
                elif op == "=":
                    ok = any(float(ROWS[field][row]) == _seconds(field, v) for v in value)
                else:
                    ok = OPS[op](float(ROWS[field][row]), _seconds(field, value))
                keep[row] &= ok
    return keep


@settings(**FUZZ)
@given(filters())
def test_any_filter_selects_what_it_says_and_echoes_itself(raw):
    flt = parse_filter(raw)
    if flt is None:
        assert raw == {}
        return
    assert (COLUMNS.mask(flt) == _by_hand(raw)).all()
    echo = flt.describe()
    assert parse_filter(echo) == flt and parse_filter(json.loads(json.dumps(echo))) == flt  # the one normal form
    assert set(echo) == set(raw)  # every field applied is echoed, each with every operator given
    for field, spec in raw.items():
        if isinstance(spec, dict):
            assert set(echo[field] if isinstance(echo[field], dict) else {"=": 0}) == set(spec)
    # the command line's form of the same filter is the same filter
    where = []
    for field, spec in echo.items():
        for op, value in (spec.items() if isinstance(spec, dict) else [("=", spec)]):
            if op == "=" and field == "path_prefix":
                where += [f"{field}={v}" for v in value[:1]] if len(value) == 1 else []
            else:
                where.append(f"{field}{op}{','.join(map(str, value)) if isinstance(value, list) else value}")
    if not ("path_prefix" in echo and len(echo["path_prefix"]) > 1):  # several prefixes: JSON only
        assert parse_where(where) == flt


def test_contradictions_are_evaluated_and_echoed_whole():
    flt = parse_filter({"width": {"=": [5], "<": 3}, "label": ["cats"]})
    assert flt.describe() == {"label": ["cats"], "width": {"=": [5], "<": 3}}
    assert not COLUMNS.mask(flt).any()
    both = parse_filter({"width": {">": 10, "<": 5}})
    assert not COLUMNS.mask(both).any() and both.describe() == {"width": {">": 10, "<": 5}}


@pytest.mark.parametrize("where, message", [
    (["label=cats", "label=dogs"], "--where gives label= twice ('label=cats' and 'label=dogs'): list the values "
                                   "once, any of them: label=a,b"),
    (["width>3", "width>5"], "--where gives width> twice ('width>3' and 'width>5'): give one bound"),
    (["path_prefix=/a", "path_prefix=/b"], "--where gives path_prefix= twice"),
    (["taken>=2020-01-01", "taken>=2021-01-01"], "--where gives taken>= twice"),
])
def test_the_command_line_refuses_a_field_and_operator_given_twice(where, message):
    with pytest.raises(InvalidFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_where(where)


@pytest.mark.parametrize("raw", ["2025", "20200101", 2025, 1_700_000_000, 1.7e9, "1700000000", "2025-13-01",
                                 "2025-02-30", "2025-W01", "2025-001", "2025-01-31 12:00", "2025-01-31T25:00",
                                 "0001-01-01T00:00+01:00", "9999-12-31T23:00-02:00", True, None,
                                 "\u0662\u0660\u0662\u0665-01-01", "2025-01-31T12:00:00+0200"])
def test_times_are_iso_8601_only(raw):
    for field in TIME_FIELDS:
        with pytest.raises(InvalidFilterError, match=rf"{field} needs an ISO 8601 date or date-time \(2025-01-31, "):
            parse_filter({field: {">=": raw}})
    with pytest.raises(InvalidFilterError, match="needs an ISO 8601 date"):
        parse_where([f"taken<{raw}"])


def test_offsets_and_zones_read_as_the_same_instant():
    same = [parse_filter({"taken": {"<": t}}) for t in ("2020-01-01T02:00:00+02:00", "2020-01-01T00:00:00Z",
                                                          "2020-01-01T00:00", "2020-01-01", "2019-12-31T19:00-05:00")]
    assert all(f == same[0] for f in same) and same[0].describe() == {"taken": {"<": "2020-01-01T00:00:00Z"}}


# ------------------------------------------------------------------ Python, command line and HTTP agree
CONTRADICTION = {"width": {"=": [64], "<": 10}}


def test_python_cli_and_http_apply_and_echo_the_same_filter(engine, built_index, live_server):
    assert engine.matching(CONTRADICTION) == 0 and engine.search_id(0, 5, filter=CONTRADICTION) == []
    r = requests.post(live_server.url + "/api/search", json={"id": 0, "k": 5, "filter": CONTRADICTION}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["filter"] == CONTRADICTION and r.json()["matched"] == 0 and r.json()["results"] == []
    for taken in ("2025", 20200101):
        r = requests.post(live_server.url + "/api/search", json={"id": 0, "filter": {"taken": {">=": taken}}},
                          timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_filter", r.text
        assert "needs an ISO 8601 date or date-time" in r.json()["error"]["message"]
    exe = Path(sys.executable).parent / "imgsearch"

    def search(*where):
        return subprocess.run([exe, "search", "--index", built_index[0], "--like", "0", "-k", "3", "--json",
                               *[x for w in where for x in ("--where", w)]], capture_output=True, text=True,
                              timeout=300, env=fake_model_env())

    done = search("width=64", "width<10")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["filter"] == CONTRADICTION and out["matched"] == 0 and out["results"] == []
    for where, message in [(("label=photos", "label=emoji"), "--where gives label= twice"),
                           (("taken>=2025",), "taken needs an ISO 8601 date")]:
        bad = search(*where)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and message in bad.stderr, bad.stderr
