"""Numbers of any size are a 400, never a 500 (issue 30, item 7): every integer and float taken from a URL path,
a query string, a form, a JSON body or the command line goes through the one strict parser
(``indexer/numbers.py``); JSON's own ``NaN``, ``1e400`` and 400-digit integers are refused where the body is
read.  The rule is fuzzed with hypothesis, and every endpoint's numeric fields get the same hostile values
through a real server on loopback, every command's numeric options through the real click commands."""

from __future__ import annotations

import math

import pytest
import requests
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsearch.search.errors import InvalidFieldError
from imgsearch.search.query.numbers import MAX_ID, id_field, integer_field, loads, number_field

FUZZ = dict(deadline=None, derandomize=True, database=None, max_examples=300)
HUGE = "1" + "0" * 400
# raw JSON literals: what a hostile client writes, not what Python's json.dumps would
HOSTILE_JSON = [HUGE, "-" + HUGE, "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "true", "\"\u0663\"",
                "\"1_0\"", "100000000000000000000", "[1]", "{}"]
HOSTILE_TEXT = [HUGE, "1e400", "nan", "inf", "-inf", "\u0663", "\u00b2", "1_0", "0x10", " ", "5.5e", "1e99999",
                "+-1", "--1", "1" * 5000]
anything = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=40), st.none(),
                     st.integers(-10**500, 10**500), st.from_regex(r"[+-]?[0-9]{1,500}(\.[0-9]*)?(e[+-]?[0-9]{1,6})?",
                                                                   fullmatch=True))


@settings(**FUZZ)
@given(anything, st.integers(-10**6, 10**6), st.integers(0, 10**20))
def test_an_integer_field_is_in_range_or_an_invalid_field_error(raw, low, span):
    try:
        value = integer_field(raw, "n", low, low + span)
    except InvalidFieldError as exc:
        assert exc.field == "n" and "n must be an integer between" in str(exc) and len(str(exc)) < 400
    else:
        assert type(value) is int and low <= value <= low + span and not isinstance(raw, bool)
        assert value == (int(raw.strip()) if isinstance(raw, str) else raw)


@settings(**FUZZ)
@given(anything, st.floats(-1e6, 1e6), st.floats(0, 1e300))
def test_a_number_field_is_finite_and_in_range_or_an_invalid_field_error(raw, low, span):
    try:
        value = number_field(raw, "x", low, low + span)
    except InvalidFieldError as exc:
        assert exc.field == "x" and len(str(exc)) < 400
    else:
        assert type(value) is float and math.isfinite(value) and low <= value <= low + span
        assert math.copysign(1, value) == 1 or value != 0  # -0 reads as 0


@pytest.mark.parametrize("text", HOSTILE_TEXT + ["\u0663", "\uff11", "5.0", "1e3", "true"])
def test_ids_are_ascii_digits_of_at_most_64_bits(text):
    with pytest.raises(InvalidFieldError, match="id must be an integer between 0 and"):
        id_field(text)
    assert id_field(" 42 ") == 42 and id_field(str(MAX_ID)) == MAX_ID and id_field(3.0, text=False) == 3


@pytest.mark.parametrize("literal, message", [
    (HUGE, "beyond 64 bits"), ("-" + HUGE, "beyond 64 bits"), ("9223372036854775808", "beyond 64 bits"),
    ("1e400", "beyond a float's range"), ("NaN", "NaN is not a JSON number"), ("-Infinity", "-Infinity is not"),
])
def test_json_text_is_read_by_the_same_rule(literal, message):
    with pytest.raises(InvalidFieldError, match=message):
        loads(f'{{"k": [{literal}]}}')
    with pytest.raises(InvalidFieldError, match="the key 'k' is given twice in one object: give it once"):
        loads('{"k": 1, "k": 2}')
    assert loads('{"k": [9223372036854775807, 1e308, -0.0]}') == {"k": [MAX_ID, 1e308, -0.0]}


# ------------------------------------------------------------------ every endpoint, over HTTP
JSON_BODIES = {  # endpoint -> JSON bodies with @ where the hostile literal goes
    "/api/search": ['{"id": @}', '{"id": 0, "k": @}', '{"id": 0, "offset": @}', '{"id": 0, "min_score": @}',
                    '{"vector": [@, 1]}', '{"positive": [{"id": @}]}', '{"positive": [{"id": 0, "weight": @}]}',
                    '{"id": 0, "filter": {"width": {">=": @}}}', '{"id": 0, "filter": {"width": [@]}}',
                    '{"id": 0, "filter": {"file_size": {"=": [@], "<": @}}}', '{"id": 0, "filter": {"taken": {"<": @}}}',
                    '{"id": 0, "box": [0, 0, @, 1]}'],
    "/api/search/batch": ['{"queries": [{"id": @}]}', '{"queries": [{"id": 0, "k": @}]}'],
    "/api/classify": ['{"id": 0, "top": @}', '{"id": @}'],
    "/api/explain": ['{"query": {"id": @}, "id": 1}', '{"query": {"id": 0}, "id": @}'],
    # never a valid request, whatever the number: a hostile one must not train (or 500) before it is refused
    "/api/heads": ['{"name": "h", "search_weight": @, "examples": {"a": [0]}}',
                   '{"name": "h", "examples": {"a": [@], "b": [@]}}'],
}
QUERY_STRINGS = {"/api/duplicates": ["threshold", "offset", "limit"], "/api/images/0": ["size"]}


def _assert_refused(r: requests.Response, what: str):
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    error = r.json()["error"]
    assert set(error) == {"code", "message"} and len(error["message"]) < 600, what


@pytest.mark.parametrize("literal", HOSTILE_JSON)
def test_every_json_numeric_field_refuses_hostile_numbers(headed_server, literal):
    for path, bodies in JSON_BODIES.items():
        for body in bodies:
            text = body.replace("@", literal)
            r = requests.post(headed_server.url + path, data=text, headers={"Content-Type": "application/json"},
                              timeout=60)
            if r.status_code == 200 and path == "/api/search/batch":  # a batch answers each query's error
                assert all("error" in x for x in r.json()["results"]), text
                continue
            _assert_refused(r, f"POST {path} {text[:120]}")


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_every_query_string_path_and_form_number_refuses_hostile_text(headed_server, value):
    url = headed_server.url
    for path, names in QUERY_STRINGS.items():
        for name in names:
            _assert_refused(requests.get(url + path, params={name: value}, timeout=60), f"{path}?{name}={value[:40]}")
    r = requests.get(f"{url}/api/images/{value.strip() or 'x'}", timeout=60)
    assert r.status_code in (400, 404) and r.json()["error"]["code"] in ("invalid_id", "not_found"), r.text
    for field in ("k", "offset", "min_score"):
        _assert_refused(requests.post(url + "/api/search", data={field: value}, files={"image": ("a.png", b"x")},
                                      timeout=60), f"form {field}={value[:40]}")
    _assert_refused(requests.post(url + "/api/search", files={"positive": (None, value)}, timeout=60),
                    f"form positive={value[:40]}")
    _assert_refused(requests.post(url + "/api/explain", data={"id": value}, files={"image": ("a.png", b"x")},
                                  timeout=60), f"explain form id={value[:40]}")


def test_the_codes_and_messages_say_which_field_and_what_to_send(headed_server):
    url, json_type = headed_server.url, {"Content-Type": "application/json"}
    cases = [
        ("/api/search", f'{{"id": 0, "filter": {{"width": {{">=": {HUGE}}}}}}}', "invalid_json", "beyond 64 bits"),
        ("/api/search", '{"id": 0, "min_score": 1e400}', "invalid_json", "beyond a float's range"),
        ("/api/search", '{"id": 0, "k": 2, "k": 3}', "invalid_json", "the key 'k' is given twice"),
        ("/api/search", '{"id": 0, "filter": {"width": {">=": "1e400"}}}', "invalid_filter", "width needs a finite"),
        ("/api/search", '{"id": 18446744073709551615}', "invalid_json", "beyond 64 bits"),
        ("/api/search", '{"id": -1}', "invalid_id", "id must be an integer between 0 and"),
        ("/api/heads", '{"name": "h", "search_weight": 11, "examples": {}}', "invalid_search_weight",
         "search_weight must be a number from 0 to 10"),
    ]
    for path, body, code, message in cases:
        r = requests.post(url + path, data=body, headers=json_type, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (body, r.text)
        assert message in r.json()["error"]["message"], (body, r.text)
    r = requests.get(url + "/api/images/" + "9" * 30, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_id", r.text
    r = requests.get(url + "/api/images/0", params={"size": "\u0663\u0663"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_size", r.text
    r = requests.get(url + "/api/duplicates", params={"threshold": "nan"}, timeout=60)
    assert r.status_code == 400 and "threshold must be a number above 0 and at most 1" in r.text


# ------------------------------------------------------------------ every command's numeric options
COMMANDS = [  # (arguments before the option, option) of commands that take numbers
    (["search", "--index", "{idx}"], "-k"), (["search", "--index", "{idx}"], "--offset"),
    (["search", "--index", "{idx}"], "--min-score"),
    (["classify", "--index", "{idx}", "--head", "cat", "{idx}/manifest.json"], "--top"),
    (["explain", "--index", "{idx}", "0"], ""),
    (["duplicates", "--index", "{idx}"], "--threshold"), (["duplicates", "--index", "{idx}"], "--limit"),
    (["train-head", "--index", "{idx}", "--name", "n"], "--seed"),
    (["train-head", "--index", "{idx}", "--name", "n"], "--search-weight"),
    (["train-head", "--index", "{idx}", "--name", "n"], "--val-fraction"),
    (["index", "{idx}", "--index", "{idx}"], "--batch-size"), (["serve", "--index", "{idx}"], "--port"),
]


@pytest.mark.parametrize("value", [HUGE, "1e400", "nan", "inf", "\u0663", "1_0", "0x10", "-" + HUGE])
def test_every_numeric_option_is_a_usage_error_naming_it(built_index, value):
    from imgsearch.web.cli import main

    runner = CliRunner()
    for args, option in COMMANDS:
        args = [a.replace("{idx}", str(built_index[0])) for a in args]
        given = [option, value] if option else ["--", value]  # a positional argument may start with '-'
        result = runner.invoke(main, [*args, *given], catch_exceptions=True)
        assert result.exit_code == 2, (args, option, value, result.output, result.exception)
        assert "must be" in result.output and "Traceback" not in result.output, (args, option, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
