"""POST /api/explain on a real server on loopback (issue 18), through raw HTTP and the Python client.

An explanation is the CNN's feature map: these run on the efficientnet-lite0 index."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.search.engine import SearchEngine

pytestmark = pytest.mark.slow  # the explaining model is a conversion of its own: tens of seconds cold


def _post(server, **kwargs):
    return requests.post(f"{server.url}/api/explain", timeout=60, **kwargs)


def test_explain_by_id_and_by_upload(cnn_server, cnn_engine, corpus):
    query = corpus / "photos" / "chelsea.jpg"
    hits = cnn_engine.search_image(query, k=3)
    with open(query, "rb") as f:
        r = _post(cnn_server, files={"image": ("chelsea.jpg", f)}, data={"id": str(hits[1].id)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"] == [7, 7] and len(body["query_shares"]) == 7 and len(body["result_shares"][0]) == 7
    assert abs(body["score"] - hits[1].score) < 1e-4
    assert abs(sum(map(sum, body["query_shares"])) - body["score"]) < 1e-3
    assert abs(sum(map(sum, body["result_shares"])) - body["score"]) < 1e-3
    assert body["query"] == {"type": "image", "filename": "chelsea.jpg"} and body["id"] == hits[1].id
    query_id = hits[0].id
    by_id = cnn_engine.search_id(query_id, k=2)
    r = _post(cnn_server, json={"query": {"id": query_id}, "id": by_id[0].id})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["query_sum"] - by_id[0].score) < 1e-3 and abs(body["result_sum"] - by_id[0].score) < 1e-3
    assert body["query"] == {"type": "id", "id": query_id} and body["query_id"] == query_id
    assert body["head"] is None and body["head_share"] == 0


@pytest.mark.parametrize("kwargs, status, words", [
    ({"json": {"query": {"id": 0}}}, 400, "name the result to explain in 'id'"),
    ({"json": {"id": 1}}, 400, "'query' must be {\"id\": N}"),
    ({"json": {"query": {"vector": [0.0, 1.0]}, "id": 1}}, 400, "a vector has no feature map"),
    ({"json": {"query": {"id": "zero"}, "id": 1}}, 400, "query id must be an integer between 0 and"),
    ({"json": {"query": {"id": 0}, "id": True}}, 400, "id must be an integer between 0 and"),
    ({"json": {"query": {"id": 0}, "id": 99999}}, 404, "no image with id 99999"),
    ({"json": {"query": {"id": 99999}, "id": 0}}, 404, "no image with id 99999"),
    ({"json": {"query": {"id": 0}, "id": 1, "head": "nope"}}, 400, "no head named"),
    ({"json": [1, 2]}, 400, "send JSON such as"),
    ({"files": {"image": ("notes.jpg", b"not a picture")}, "data": {"id": "0"}}, 400, "notes.jpg"),
    ({"files": {"image": ("a.jpg", b"x")}}, 400, "name the result to explain in 'id'"),
    ({"files": {"other": ("a.jpg", b"x")}, "data": {"id": "0"}}, 400, "multipart field 'image'"),
])
def test_bad_explain_requests_get_the_error_contract(cnn_server, kwargs, status, words):
    r = _post(cnn_server, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and error["code"]


def test_openapi_describes_explain(cnn_server):
    spec = requests.get(f"{cnn_server.url}/api/openapi.json", timeout=30).json()
    post = spec["paths"]["/api/explain"]["post"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"score", "query_shares", "result_shares"} <= set(post["responses"]["200"]["content"]["application/json"]
                                                             ["schema"]["required"])


def test_client_explain_by_image_and_id_and_its_errors(cnn_server, cnn_engine, corpus):
    hits = cnn_engine.search_id(int(cnn_engine.ids[0]), k=2)
    with SearchClient(cnn_server.url, timeout=60) as client:
        why = client.explain(int(cnn_engine.ids[0]), hits[0].id)
        assert abs(why.score - hits[0].score) < 1e-4 and abs(why.query_sum - why.score) < 1e-3
        assert len(why.query_shares) == 7 and why.id == hits[0].id and why.head is None
        image = corpus / "photos" / "rocket.jpg"
        why = client.explain(image, hits[0].id)
        assert why.raw["query"]["filename"] == "rocket.jpg"
        with pytest.raises(SearchAPIError) as err:
            client.explain(int(cnn_engine.ids[0]), 99999)
        assert err.value.status == 404


def test_head_aware_explain_over_http(cnn_headed_server, cnn_headed_index):
    engine = SearchEngine.open(cnn_headed_index)
    query = int(engine.ids[0])
    hit = engine.search_id(query, k=1, head="cat")[0]
    with SearchClient(cnn_headed_server.url, timeout=60) as client:
        why = client.explain(query, hit.id, head="cat")
    assert why.head == "cat" and why.head_share > 0
    assert abs(why.score - hit.score) < 1e-4 and abs(why.result_sum - hit.score) < 1e-3


@pytest.fixture
def cli(monkeypatch):
    """The root group with ``explain`` among its commands, as its entry point (pyproject.toml) registers it."""
    from importlib.metadata import EntryPoint

    from click.testing import CliRunner

    from imgsearch.web.cli import Commands, main

    points = Commands._points

    def with_explain(self):
        return {**points(self), "explain": EntryPoint("explain", "imgsearch.search.cli.explain:explain", "imgsearch.commands")}

    monkeypatch.setattr(Commands, "_points", with_explain)
    return lambda *args: CliRunner().invoke(main, list(args))


def test_cli_explain_writes_the_pair_with_its_heat(cli, cnn_index, cnn_engine, corpus, tmp_path):
    from PIL import Image

    index_dir = str(cnn_index[0])
    query = corpus / "photos" / "chelsea.jpg"
    hit = cnn_engine.search_image(query, k=2)[1]
    out = tmp_path / "why.png"
    result = cli("explain", "--index", index_dir, str(query), str(hit.id), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"score {hit.score:.4f}" in result.output and "wrote" in result.output
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > 1.5 * picture.height
        pixels = np.asarray(picture.convert("RGB"), np.int32)
    red = (pixels[..., 0] > pixels[..., 2] + 60).mean()  # the positive shares' tint is on the images
    assert red > 0.05
    result = cli("explain", "--index", index_dir, str(int(cnn_engine.ids[0])), str(hit.id), "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["query_id"] == int(cnn_engine.ids[0]) and abs(body["query_sum"] - body["score"]) < 1e-3


def test_cli_explain_errors_are_one_line(cli, cnn_index, cnn_engine):
    index_dir = str(cnn_index[0])
    result = cli("explain", "--index", index_dir, str(int(cnn_engine.ids[0])), "99999")
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1] == "Error: no image with id 99999 in the index"
    result = cli("explain", "--index", index_dir, "no-such-file.jpg", "0")
    assert result.exit_code == 2 and "neither an image file nor an indexed id" in result.output


def test_a_box_is_explained_as_the_region_search_scores_it(cnn_server, cnn_engine, corpus):
    """Issue 30, item 12: ``box`` is honoured, by id and by upload, never ignored."""
    box = [0.1, 0.2, 0.6, 0.9]
    query = corpus / "photos" / "chelsea.jpg"
    by_region = cnn_engine.search_image(query, k=2, box=box)
    with open(query, "rb") as f:
        r = _post(cnn_server, files={"image": ("chelsea.jpg", f)}, data={"id": str(by_region[1].id), "box": "0.1,0.2,0.6,0.9"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["score"] - by_region[1].score) < 1e-3 and body["box"] == box
    assert abs(body["query_sum"] - body["score"]) < 1e-3 and body["query"]["box"] == box
    query_id = int(cnn_engine.ids[3])
    hits = cnn_engine.search_id(query_id, k=3, box=box)
    client = SearchClient(cnn_server.url)
    why = client.explain(query_id, hits[2].id, box=box)
    assert abs(why.score - hits[2].score) < 1e-3
    whole = client.explain(query_id, hits[2].id)
    assert abs(whole.score - cnn_engine.explain(query_id, hits[2].id).score) < 1e-4
    assert abs(whole.score - why.score) > 1e-4  # the region, not the whole image, was explained


def test_cli_explain_by_path_or_id(cli, cnn_index, cnn_engine, corpus, tmp_path):
    """Issue 32: a file the index holds is that indexed image, as QUERY or RESULT; another file is only a query."""
    import shutil

    index_dir = str(cnn_index[0])
    query = corpus / "photos" / "chelsea.jpg"
    query_id = indexed = next(h.id for h in cnn_engine.get_many(cnn_engine.ids.tolist()) if h.path == str(query))
    hit = cnn_engine.search_id(query_id, k=2)[0]
    for q in (str(query), str(query_id)):
        for r in (hit.path, str(hit.id)):
            result = cli("explain", "--index", index_dir, q, r)
            assert result.exit_code == 0, result.output
            assert result.output.startswith(f"image {indexed} -> image {hit.id}: score {hit.score:.4f}"), result.output
    copy = tmp_path / "copy.jpg"  # a file the index does not hold: explained as an uploaded query
    shutil.copy(query, copy)
    result = cli("explain", "--index", index_dir, str(copy), hit.path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["query_id"] is None
    result = cli("explain", "--index", index_dir, hit.path, str(copy))
    assert result.exit_code == 2 and "is not an image this index holds" in result.output, result.output
