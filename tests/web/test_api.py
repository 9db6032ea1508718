"""The JSON API on a real server on loopback, driven by the Python client and raw HTTP."""

import io
import os

import numpy as np
import pytest
import requests
from PIL import Image

from imgsearch.search.client.http_client import RemoteHit, SearchAPIError, SearchClient
from tests.pixel_model import DIM, NAME


def test_health_and_info(client, built_index):
    assert client.health() == {"status": "ok", "count": built_index[1].total}
    info = client.info()
    assert info["backbone"]["name"] == NAME and info["dim"] == DIM
    assert info["count"] == built_index[1].total and info["max_k"] == 1000


def test_search_by_image_every_input_kind(client, corpus, engine):
    path = corpus / "photos" / "rocket.jpg"
    data = path.read_bytes()
    expected = [h.id for h in engine.search_image(path, k=5)]
    with open(path, "rb") as file, Image.open(path) as picture:
        for image in (path, str(path), data, io.BytesIO(data), file, picture):
            res = client.search(image, k=5)
            assert isinstance(res[0], RemoteHit)
            # a PIL image is re-encoded as PNG; the ranking is still the rocket first
            assert res[0].path == str(path) and res[0].score == pytest.approx(1.0, abs=1e-3)
            assert len(res) == 5 and res.backbone == NAME and res.took_ms > 0
    assert [h.id for h in client.search(path, k=5)] == expected  # same as in process


def test_search_by_id_and_vector(client, engine):
    res = client.search_id(3, k=4)
    assert [h.id for h in res] == [h.id for h in engine.search_id(3, k=4)]
    assert 3 not in [h.id for h in res]
    vec = engine.vector(3)
    res = client.search_vector(vec.tolist(), k=2)
    assert res[0].id == 3 and res[0].score == pytest.approx(1.0, abs=1e-4)


def test_every_hit_carries_its_pixels_and_bytes_as_indexed(client, live_server, engine):
    """Width, height and file size of each result (the page's cards show them), as the shards hold them: the
    client, raw JSON and a batch alike; what the files say now is not asked."""
    from PIL import Image as PILImage

    res = client.search_id(0, k=30)
    assert len(res) == 30
    for hit in res:
        with PILImage.open(hit.path) as picture:
            assert (hit.width, hit.height) == picture.size, hit.path
        assert hit.file_size == os.path.getsize(hit.path), hit.path
    body = requests.post(live_server.url + "/api/search/batch", json={"queries": [{"id": 0, "k": 3}]},
                         timeout=30).json()
    first = body["results"][0][0]
    assert {"width", "height", "file_size"} <= set(first) and first["id"] == res[0].id
    assert (first["width"], first["height"], first["file_size"]) == (res[0].width, res[0].height,
                                                                     res[0].file_size)


def test_thumbnails(client, live_server):
    res = client.search_id(0, k=1)
    r = requests.get(live_server.url + res[0].thumbnail_url, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) <= 256
    small = Image.open(io.BytesIO(client.image(0, size=32)))
    assert max(small.size) == 32
    full = Image.open(io.BytesIO(client.image(0)))
    assert max(full.size) >= max(small.size)


def _post(url, **kw):
    return requests.post(url + "/api/search", timeout=30, **kw)


@pytest.mark.parametrize("kwargs, status, code, message", [
    ({"files": {"image": ("x.jpg", b"this is text")}}, 400, "invalid_image", "not an image"),
    ({"files": {"image": ("x.jpg", b"")}}, 400, "invalid_image", "empty file"),
    ({"files": {"other": ("x.jpg", b"abc")}}, 400, "missing_field", "'image'"),
    ({"data": {"k": "5"}}, 400, "missing_field", "multipart/form-data"),
    ({"json": {"k": 5}}, 400, "missing_field", "'id' or 'vector'"),
    ({"json": [1, 2]}, 400, "invalid_json", "JSON object"),
    ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", "JSON object"),
    ({"json": {"id": 0, "k": 0}}, 400, "invalid_k", "between 1 and 1000"),
    ({"json": {"id": 0, "k": 1001}}, 400, "invalid_k", "between 1 and 1000"),
    ({"json": {"id": 0, "k": "many"}}, 400, "invalid_k", "integer"),
    ({"json": {"id": 0, "k": 2.5}}, 400, "invalid_k", "integer"),
    ({"json": {"id": "7"}}, 400, "invalid_id", "integer"),
    ({"json": {"id": 10 ** 6}}, 404, "not_found", "no image with id 1000000"),
    ({"json": {"vector": [1.0, 2.0]}}, 400, "invalid_vector", f"needs ({DIM},)"),
    ({"json": {"vector": "abc"}}, 400, "invalid_vector", f"list of {DIM} numbers"),
    ({"json": {"vector": [None] * DIM}}, 400, "invalid_vector", f"list of {DIM} numbers"),
])
def test_search_errors(live_server, kwargs, status, code, message):
    r = _post(live_server.url, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and message in err["message"]


def test_upload_over_limit_is_413(live_server):
    big = b"\xff\xd8" + b"\0" * (3 * 1024 * 1024)  # server limit is 2 MB
    r = _post(live_server.url, files={"image": ("big.jpg", big)})
    assert r.status_code == 413
    assert r.json()["error"] == {"code": "too_large", "message": "upload too large: the limit is 2 MB"}


@pytest.mark.parametrize("path, status, code", [
    ("/api/images/999999", 404, "not_found"),
    ("/api/images/-1", 400, "invalid_id"),  # not an id at all: what to send, not "not found"
    ("/api/images/1e3", 400, "invalid_id"),
    ("/api/images/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
    ("/api/images/0?size=5", 400, "invalid_size"),
    ("/api/images/0?size=big", 400, "invalid_size"),
    ("/api/nowhere", 404, "not_found"),
])
def test_get_errors(live_server, path, status, code):
    r = requests.get(live_server.url + path, timeout=10)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


def test_wrong_method_is_json_405(live_server):
    r = requests.get(live_server.url + "/api/search", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_client_raises_one_exception_type(client, live_server):
    with pytest.raises(SearchAPIError) as info:
        client.search_id(10 ** 6)
    assert info.value.status == 404 and info.value.code == "not_found"
    assert "no image with id" in info.value.message
    with pytest.raises(SearchAPIError) as info:
        client.search(b"not an image")
    assert info.value.status == 400 and info.value.code == "invalid_image"
    # nothing listens on port 9 of loopback: a connection error, same type
    with pytest.raises(SearchAPIError) as info:
        SearchClient("http://127.0.0.1:9", timeout=2).health()
    assert info.value.status is None and info.value.code == "unreachable"


def test_openapi_describes_the_api(client, live_server):
    spec = requests.get(live_server.url + "/api/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/api/search", "/api/search/batch", "/api/classify", "/api/images/{id}",
                                  "/api/duplicates", "/api/duplicates/marks", "/api/duplicates/remove", "/api/info",
                                  "/api/health", "/api/explain", "/api/heads", "/api/heads/{name}",
                                  "/api/duplicates/jobs", "/api/duplicates/jobs/{id}"}
    assert {"400", "404", "413"} <= set(spec["paths"]["/api/search"]["post"]["responses"])
    hit = spec["components"]["schemas"]["Hit"]
    assert set(hit["required"]) == {"id", "path", "label", "score", "thumbnail_url"}


def test_page_is_served_without_external_resources(live_server):
    r = requests.get(live_server.url + "/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    html = r.text
    assert NAME in html and 'id="file-input"' in html
    assert "http://" not in html and "https://" not in html  # no CDN, works offline
    for asset in ("/static/app.js", "/static/app.css", "/static/explain.js"):
        assert requests.get(live_server.url + asset, timeout=10).status_code == 200
    r = requests.get(live_server.url + "/no-such-page", timeout=10)
    assert r.status_code == 404 and "text/html" in r.headers["Content-Type"]


def test_vector_search_matches_engine(client, engine):
    rng = np.random.default_rng(0)
    v = rng.normal(size=DIM).astype(np.float32)
    assert [h.id for h in client.search_vector(v, k=5)] == [h.id for h in engine.search_vector(v, k=5)]


def test_classify_needs_a_head(live_server, client):
    r = requests.post(live_server.url + "/api/classify", json={"id": 0}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_field" and "none" in r.json()["error"]["message"]
    with pytest.raises(SearchAPIError) as info:
        client.search_id(0, head="cat")
    assert info.value.status == 400 and info.value.code == "unknown_head"
