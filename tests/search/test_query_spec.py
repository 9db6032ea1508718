"""A query is parsed once (issue 29.3): one Query, the same rules from Python values and from request fields."""

import math

import pytest

from imgsearch.search.errors import HeadError, InvalidBoxError, InvalidFieldError, InvalidFilterError
from imgsearch.search.query.spec import Query, as_query
from imgsearch.search.query.window import DEFAULT_K, MAX_K


def test_python_values_and_request_fields_give_the_same_query():
    from_python = Query.of(5, offset=2, min_score=0.5, head="cat", box=[0, 0, 0.5, 1],
                           filter={"label": ["cats"]}, strategy="best")
    from_text = Query.from_fields({"k": "5", "offset": "2", "min_score": "0.5", "head": "cat", "box": "0,0,0.5,1",
                                   "filter": '{"label": ["cats"]}', "strategy": "best"})
    from_json = Query.from_fields({"k": 5.0, "offset": 2, "min_score": 0.5, "head": "cat", "box": [0, 0, 0.5, 1],
                                   "filter": {"label": ["cats"]}, "strategy": "best", "unknown": 1})
    assert from_python == from_text == from_json
    assert Query.from_fields(from_python.to_fields()) == from_python  # what the client sends, read back


def test_defaults_and_the_window():
    q = Query.from_fields({"k": "", "head": "", "filter": ""})
    assert q == Query() and q.window().k == DEFAULT_K and q.window(3).k == 3
    assert Query.of(min_score=0.9).window().k == MAX_K  # every result reaching the cut-off
    assert Query.of().with_default_k(7).k == 7 and Query.of(4).with_default_k(7).k == 4


@pytest.mark.parametrize("fields, field", [
    ({"k": 0}, "k"), ({"k": MAX_K + 1}, "k"), ({"k": "many"}, "k"), ({"k": 2.5}, "k"), ({"k": True}, "k"),
    ({"k": "9" * 400}, "k"), ({"k": 10 ** 400}, "k"), ({"k": float("inf")}, "k"),
    ({"offset": -1}, "offset"), ({"offset": MAX_K}, "offset"), ({"offset": "1e3"}, "offset"),
    ({"min_score": 1.5}, "min_score"), ({"min_score": "high"}, "min_score"), ({"min_score": 10 ** 400}, "min_score"),
    ({"min_score": "nan"}, "min_score"), ({"min_score": -math.inf}, "min_score"), ({"min_score": False}, "min_score"),
    ({"strategy": "worst"}, "strategy"), ({"strategy": 3}, "strategy"),
])
def test_a_bad_option_names_its_field_never_overflows(fields, field):
    with pytest.raises(InvalidFieldError) as err:
        Query.from_fields(fields)
    assert err.value.field == field and str(err.value).startswith(field)
    assert len(str(err.value)) < 400  # a 400-digit value is quoted, not echoed whole


def test_the_other_options_raise_their_own_errors():
    with pytest.raises(InvalidBoxError):
        Query.from_fields({"box": "0,0,2,1"})
    with pytest.raises(InvalidFilterError):
        Query.from_fields({"filter": "{not json"})
    with pytest.raises(HeadError, match="head must be a head's name, got 5"):
        Query.from_fields({"head": 5})
    with pytest.raises(InvalidFieldError):  # Python callers pass ints, not their text
        Query.of("5")


def test_the_engine_takes_a_query_or_its_fields_never_both():
    q = Query.of(3)
    assert as_query(q) is q and as_query(None, 3) == q
    with pytest.raises(TypeError, match="not both"):
        as_query(q, 5)
    with pytest.raises(TypeError, match="must be a Query"):
        as_query({"k": 3})
