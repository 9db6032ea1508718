"""Filters through a real server (JSON API, multipart form, the Python client) and ``imgsearch search --where``
(issue 17); the page's filter picker is in tests/browser/test_filters_page.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from tests.helpers import fake_model_env
from tests.pixel_model import DIM

EMOJI = "emoji/Animals & Nature"


@pytest.fixture(scope="module")
def labels(live_server) -> list[str]:
    return requests.get(live_server.url + "/api/info", timeout=30).json()["labels"]


def _search(server, body: dict) -> requests.Response:
    return requests.post(server.url + "/api/search", json=body, timeout=60)


def test_a_label_filter_returns_k_results_all_of_that_label(live_server, labels):
    assert EMOJI in labels and "photos" in labels
    body = _search(live_server, {"id": 0, "k": 5, "filter": {"label": [EMOJI, "photos"]}}).json()
    assert len(body["results"]) == 5 and {h["label"] for h in body["results"]} <= {EMOJI, "photos"}
    assert body["filter"] == {"label": [EMOJI, "photos"]} and body["matched"] >= 5 and "note" not in body
    # more results than one label holds: all of them, not k
    one = _search(live_server, {"vector": [1.0] * DIM, "k": 50, "filter": {"label": EMOJI, "width": {">=": 1}}}).json()
    assert len(one["results"]) == one["matched"] < 50
    assert {h["label"] for h in one["results"]} == {EMOJI}


def test_a_filter_on_an_uploaded_image_and_through_the_client(live_server, corpus):
    with open(corpus / "photos" / "coffee.jpg", "rb") as f:
        r = requests.post(live_server.url + "/api/search", files={"image": ("coffee.jpg", f)},
                          data={"k": "3", "filter": json.dumps({"path_prefix": str(corpus / "photos")})}, timeout=60)
    assert r.status_code == 200, r.text
    assert [h["path"] for h in r.json()["results"]][0].endswith("coffee.jpg")
    assert all(h["label"] == "photos" for h in r.json()["results"])
    with SearchClient(live_server.url, timeout=60) as client:
        res = client.search(corpus / "photos" / "coffee.jpg", k=4, filter={"label": [EMOJI]})
        assert len(res) == 4 and {h.label for h in res} == {EMOJI} and res.matched >= 4
        empty = client.search_id(0, 4, filter={"width": {">": 100_000}})
        assert list(empty) == [] and empty.matched == 0 and "no indexed image matches" in empty.note
        with pytest.raises(SearchAPIError) as err:
            client.search_vector([0.0] * DIM, 3, filter={"label": ["no such label"]})
        assert err.value.status == 400 and err.value.code == "unknown_label"


@pytest.mark.parametrize("flt, code, message", [
    ({"label": ["no-such-label"]}, "unknown_label", "no indexed image has label 'no-such-label'; the labels are: "),
    ({"colour": "red"}, "invalid_filter", "unknown filter field 'colour'; valid fields: label, path_prefix, width, "
                                          "height, file_size, mtime, taken, camera_make, camera_model; operators: "),
    ({"width": {"=>": 3}}, "invalid_filter", "unknown operator '=>' for width"),
    ({"width": "wide"}, "invalid_filter", "width needs a finite number such as 640 (at most 1e+18 either way), got 'wide'"),
    ({"taken": {">=": "soon"}}, "invalid_filter", "taken needs an ISO 8601 date or date-time (2025-01-31, "),
    ({"label": {">": "a"}}, "invalid_filter", "label takes only '='"),
    ("label=cats", "invalid_filter", "filter must be a JSON object"),
    ([1, 2], "invalid_filter", "filter must be a JSON object"),
])
def test_bad_filters_are_400_with_a_clear_message(live_server, flt, code, message):
    r = _search(live_server, {"id": 0, "k": 3, "filter": flt})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code and message in r.json()["error"]["message"], r.json()


def test_a_form_filter_that_is_not_json_is_400_before_the_upload_is_embedded(live_server, corpus):
    with open(corpus / "photos" / "coffee.jpg", "rb") as f:
        r = requests.post(live_server.url + "/api/search", files={"image": ("coffee.jpg", f)},
                          data={"filter": "{label: cats"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_filter"
    assert "filter must be a JSON object" in r.json()["error"]["message"]


def test_openapi_describes_the_filter(live_server):
    spec = requests.get(live_server.url + "/api/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["Filter"]["properties"]) == {"label", "path_prefix", "width", "height", "file_size",
                                                    "mtime", "taken", "camera_make", "camera_model"}
    json_body = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert json_body == {"$ref": "#/components/schemas/SearchQuery"}
    assert schemas["SearchQuery"]["properties"]["filter"] == {"$ref": "#/components/schemas/Filter"}
    assert {"matched", "note", "filter"} <= set(schemas["SearchResponse"]["properties"])


def test_cli_where(built_index, corpus):
    exe = Path(sys.executable).parent / "imgsearch"
    query = corpus / "photos" / "coffee.jpg"
    run = subprocess.run([exe, "search", "--index", built_index[0], query, "-k", "3", "--json",
                          "--where", f"label={EMOJI}",
                          "--where", "width>=1"], capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert len(out["results"]) == 3 and {h["label"] for h in out["results"]} == {EMOJI}
    assert out["filter"] == {"label": [EMOJI], "width": {">=": 1}} and out["matched"] >= 3
    bad = subprocess.run([exe, "search", "--index", built_index[0], query, "--where", "colour=red"],
                         capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith(
        "Error: unknown filter field 'colour'; valid fields: label, path_prefix"), bad.stderr
    assert "Traceback" not in bad.stderr
