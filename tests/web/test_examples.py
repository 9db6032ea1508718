"""min_score and offset, several examples and batches through a real server on loopback: raw HTTP for
the contract and its bad inputs, the Python client for the same answers."""

import base64

import pytest
import requests

from imgsearch.search.client.http_client import SearchAPIError
from imgsearch.search.engine import MAX_K
from imgsearch.search.query.examples import Example
from imgsearch.web.examples import MAX_BATCH, MAX_EXAMPLES
from tests.pixel_model import DIM


def _post(url, path="/api/search", **kwargs):
    return requests.post(url + path, timeout=60, **kwargs)


def _ids(body):
    return [h["id"] for h in body["results"]]


def test_min_score_and_offset(live_server, engine):
    full = engine.search_id(0, 40)
    cut = full[6].score
    r = _post(live_server.url, json={"id": 0, "min_score": cut})
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == [h.id for h in full if h.score >= cut]  # more than the default k of 10 when asked
    r = _post(live_server.url, json={"id": 0, "k": 5, "offset": 5})
    assert r.status_code == 200 and _ids(r.json()) == [h.id for h in full[5:10]]
    assert r.json()["offset"] == 5 and r.json()["min_score"] is None
    # multipart form fields are strings
    with open(engine.get(0).path, "rb") as f:
        r = _post(live_server.url, files={"image": ("q.png", f.read())}, data={"min_score": "0.5", "offset": "1"})
    assert r.status_code == 200 and all(h["score"] >= 0.5 for h in r.json()["results"])


def test_several_examples_as_ids_vectors_and_images(live_server, engine, corpus):
    rocket = corpus / "photos" / "rocket.jpg"
    expected = engine.search_examples([Example.of_id(3, weight=2), Example.of_vector(engine.vector(9)), rocket],
                                      [20], k=7)
    body = {"positive": [{"id": 3, "weight": 2}, {"vector": [float(x) for x in engine.vector(9)]},
                         {"image": base64.b64encode(rocket.read_bytes()).decode()}],
            "negative": [{"id": 20}], "k": 7}
    r = _post(live_server.url, json=body)
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == [h.id for h in expected]
    assert r.json()["query"] == {"type": "examples", "strategy": "rocchio", "positive": 3, "negative": 1}

    best = engine.search_examples([3, 9], [20], k=5, strategy="best")
    r = _post(live_server.url, json={"positive": [{"id": 3}, {"id": 9}], "negative": [{"id": 20}], "k": 5,
                                     "strategy": "best"})
    assert r.status_code == 200 and _ids(r.json()) == [h.id for h in best]

    # multipart: several files, and ids as text fields
    with open(engine.get(3).path, "rb") as a:
        files = [("positive", ("a.png", a.read())), ("positive", ("rocket.jpg", rocket.read_bytes()))]
    r = _post(live_server.url, files=files, data={"negative": ["20"], "k": "6"})
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == [h.id for h in engine.search_examples([engine.get(3).path, rocket], [20], k=6)]


BAD = [
    ({"id": 0, "min_score": "high"}, 400, "invalid_min_score", "min_score must be a number from -1 to 1"),
    ({"id": 0, "min_score": 1.5}, 400, "invalid_min_score", "got 1.5"),
    ({"id": 0, "min_score": True}, 400, "invalid_min_score", "min_score"),
    ({"id": 0, "offset": -1}, 400, "invalid_offset", f"offset must be an integer between 0 and {MAX_K - 1}"),
    ({"id": 0, "offset": "two"}, 400, "invalid_offset", "offset"),
    ({"positive": []}, 400, "invalid_examples", "at least one positive example"),
    ({"positive": {"id": 1}}, 400, "invalid_examples", "positive must be a list"),
    ({"negative": [{"id": 1}]}, 400, "invalid_examples", "at least one positive example"),
    ({"positive": [{"id": 10 ** 6}]}, 404, "not_found", "no image with id 1000000"),
    ({"positive": [{"id": 1, "weight": 0}]}, 400, "invalid_weight", "positive[0]: weight must be a number"),
    ({"positive": [{"id": 1}], "negative": [{"id": 2, "weight": "lots"}]}, 400, "invalid_weight",
     "negative[0]: weight"),
    ({"positive": [{"id": 1}], "strategy": "worst"}, 400, "invalid_strategy", "strategy must be one of rocchio, best"),
    ({"positive": [3]}, 400, "invalid_example", "positive[0] must be an object with one of id, vector, image"),
    ({"positive": [{"id": 1, "vector": [0.0]}]}, 400, "invalid_example", "exactly one of id, vector, image"),
    ({"positive": [{"id": 1, "colour": "red"}]}, 400, "invalid_example", "unknown field 'colour'"),
    ({"positive": [{"image": "@@not base64@@"}]}, 400, "invalid_image", "positive[0]: image must be base64"),
    ({"positive": [{"image": base64.b64encode(b"not a picture").decode()}]}, 400, "invalid_image", "positive[0]"),
    ({"positive": [{"vector": [1.0, 2.0]}]}, 400, "invalid_vector", f"needs ({DIM},)"),
    ({"positive": [{"id": 1}] * (MAX_EXAMPLES + 1)}, 400, "invalid_examples", f"at most {MAX_EXAMPLES}"),
]


@pytest.mark.parametrize("body, status, code, message", BAD)
def test_bad_queries_get_a_clear_4xx(live_server, body, status, code, message):
    r = _post(live_server.url, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and message in err["message"], err


def test_batch_answers_in_order_and_one_error_per_bad_query(live_server, engine, corpus):
    rocket = corpus / "photos" / "rocket.jpg"
    queries = [{"id": 0, "k": 3}, {"positive": [{"id": 10 ** 6}]}, {"vector": [float(x) for x in engine.vector(5)]},
               {"image": base64.b64encode(rocket.read_bytes()).decode(), "k": 2},
               {"positive": [{"id": 3}, {"id": 9}], "strategy": "best", "k": 4}, {"id": 0, "offset": -2}]
    r = _post(live_server.url, "/api/search/batch", json={"queries": queries})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(queries)
    assert [h["id"] for h in results[0]] == [h.id for h in engine.search_id(0, 3)]
    assert results[1] == {"error": {"code": "not_found", "message": "no image with id 1000000 in the index"},
                          "status": 404}
    assert [h["id"] for h in results[2]] == [h.id for h in engine.search_vector(engine.vector(5), 10)]
    assert [h["id"] for h in results[3]] == [h.id for h in engine.search_image(rocket, 2)]
    assert [h["id"] for h in results[4]] == [h.id for h in engine.search_examples([3, 9], strategy="best", k=4)]
    assert results[5]["status"] == 400 and results[5]["error"]["code"] == "invalid_offset"


@pytest.mark.parametrize("body, status, code, message", [
    ({"queries": [{"id": 0}] * (MAX_BATCH + 1)}, 413, "batch_too_large", f"at most {MAX_BATCH} queries"),
    ({"queries": []}, 400, "invalid_batch", "at least one query"),
    ({"queries": {"id": 0}}, 400, "invalid_batch", "queries must be a list"),
    ({"id": 0}, 400, "invalid_batch", "{\"queries\": [...]}"),
    ({"queries": [7]}, 200, None, None),  # a query that is not an object is that query's error
])
def test_bad_batches(live_server, body, status, code, message):
    r = _post(live_server.url, "/api/search/batch", json=body)
    assert r.status_code == status, r.text
    if code:
        err = r.json()["error"]
        assert err["code"] == code and message in err["message"], err
    else:
        item = r.json()["results"][0]
        assert item["status"] == 400 and item["error"]["code"] == "invalid_json"


def test_client_examples_windows_and_batches(client, engine, corpus):
    rocket = corpus / "photos" / "rocket.jpg"
    full = engine.search_id(0, 30)
    assert [h.id for h in client.search_id(0, 5, offset=5)] == [h.id for h in full[5:10]]
    assert [h.id for h in client.search_vector(engine.vector(0), min_score=full[4].score)] == \
        [h.id for h in engine.search_vector(engine.vector(0), min_score=full[4].score)]
    assert len(client.search(rocket, k=3, offset=2)) == 3
    got = client.search_examples([3, Example.of_id(9, weight=2), rocket], negative=[20], k=6)
    assert [h.id for h in got] == [h.id for h in engine.search_examples([3, Example.of_id(9, weight=2), rocket],
                                                                        [20], k=6)]
    assert got.query["type"] == "examples"

    answers = client.search_many([0, rocket, engine.vector(5), {"positive": [3, 9], "strategy": "best"}, 10 ** 6],
                                 k=4)
    assert [h.id for h in answers[0]] == [h.id for h in engine.search_id(0, 4)]
    assert [h.id for h in answers[1]] == [h.id for h in engine.search_image(rocket, 4)]
    assert [h.id for h in answers[2]] == [h.id for h in engine.search_vector(engine.vector(5), 4)]
    assert [h.id for h in answers[3]] == [h.id for h in engine.search_examples([3, 9], strategy="best", k=4)]
    assert isinstance(answers[4], SearchAPIError) and answers[4].status == 404
    with pytest.raises(SearchAPIError) as info:
        client.search_examples([])
    assert info.value.status == 400 and info.value.code == "invalid_examples"


def test_openapi_describes_windows_examples_and_batches(client):
    spec = requests.get(client.base_url + "/api/openapi.json", timeout=10).json()
    assert "/api/search/batch" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert {"min_score", "offset", "positive", "negative", "strategy"} <= set(schemas["SearchQuery"]["properties"])
    assert schemas["SearchQuery"]["properties"]["strategy"]["enum"] == ["rocchio", "best"]
    assert schemas["BatchRequest"]["properties"]["queries"]["maxItems"] == MAX_BATCH
