"""Text queries (issue 33, item 3): words embedded by the text tower of the index's encoder, on every surface
(engine, CLI, JSON API and batches, client), as a query or as one example among several; a clear 400 / one
line where the encoder has no text tower.

The index is the labelled emoji embedded by a two-layer SigLIP with random weights (fixtures ``tiny_siglip``,
``siglip_index``): what is checked is that a text's ranking is the ranking by the text tower's cosines against
the stored image vectors, not that the words mean anything (random weights; docs/guide/encoders.md says what
could not be measured here).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from imgsearch.indexer.folder.manifest import TextQueriesUnsupportedError
from imgsearch.search.errors import InvalidBoxError, InvalidFieldError
from imgsearch.search.query.examples import NEGATIVE_WEIGHT, Example
from imgsearch.search.query.spec import Query
from tests.helpers import fake_model_env

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
TEXT = "a photo of a red car"


@pytest.fixture(scope="module")
def siglip_engine(siglip_index):
    from imgsearch.search.engine import SearchEngine

    return SearchEngine.open(siglip_index)


def _text_vector(engine, text: str) -> np.ndarray:
    """The text tower's unit vector, straight from keras_hub (not through imgsearch's encoder)."""
    import keras_hub

    folder = engine.manifest["backbone"]["name"]
    model = keras_hub.models.SigLIPBackbone.from_preset(folder)
    tokens = keras_hub.models.SigLIPPreprocessor.from_preset(folder)(
        {"images": np.zeros((1, 28, 28, 3), np.float32), "prompts": [text]})["token_ids"]
    v = np.asarray(model.get_text_embeddings(tokens))[0]
    return v / np.linalg.norm(v)


def _by_cosine(engine, vector, ids=None) -> list[tuple[int, float]]:
    """Every stored image (or those of ``ids``) by its cosine to ``vector``, best first (ties by id)."""
    ids = [int(i) for i in (engine.ids if ids is None else ids)]
    scores = {i: float(engine.vector(i) @ vector) for i in ids}
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _pairs(hits) -> list[tuple[int, float]]:
    return [(h.id, h.score) for h in hits]


def _same(hits, expected) -> None:
    assert [i for i, _ in _pairs(hits)] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in _pairs(hits)], [s for _, s in expected], atol=1e-4)


def test_a_text_ranks_the_images_by_the_text_towers_cosines_with_window_and_filter(siglip_engine):
    vector = _text_vector(siglip_engine, TEXT)
    ranking = _by_cosine(siglip_engine, vector)
    _same(siglip_engine.search_text(TEXT, k=10), ranking[:10])
    _same(siglip_engine.search_text(TEXT, k=5, offset=7), ranking[7:12])
    floor = (ranking[15][1] + ranking[16][1]) / 2  # between two scores: the 16 best reach it
    _same(siglip_engine.search_text(TEXT, min_score=floor), ranking[:16])
    label = siglip_engine.labels()[0]
    kept = [h.id for h in siglip_engine.get_many(siglip_engine.ids) if h.label == label]
    _same(siglip_engine.search_text(TEXT, k=3, filter={"label": [label]}), _by_cosine(siglip_engine, vector, kept)[:3])
    other = siglip_engine.search_text("a dog sleeping under a tree", k=10)
    assert [h.id for h in other] != [i for i, _ in ranking[:10]]  # another text, another ranking


def test_a_text_is_an_example_positive_or_negative(siglip_engine):
    alone = siglip_engine.search_text(TEXT, k=8)
    _same(siglip_engine.search_examples([Example.of_text(TEXT)], k=8), _pairs(alone))
    # rocchio: the positive text minus NEGATIVE_WEIGHT times the negative text, re-normalised
    pos, neg = _text_vector(siglip_engine, TEXT), _text_vector(siglip_engine, "blue sky")
    query = pos - NEGATIVE_WEIGHT * neg
    _same(siglip_engine.search_examples([Example.of_text(TEXT)], [Example.of_text("blue sky")], k=8),
          _by_cosine(siglip_engine, query / np.linalg.norm(query))[:8])
    # with an image id: the mean of the id's vector and the text's; the id itself left out
    mixed = siglip_engine.search_examples([0, Example.of_text(TEXT)], k=5)
    query = (siglip_engine.vector(0) + pos) / 2
    expected = [p for p in _by_cosine(siglip_engine, query / np.linalg.norm(query)) if p[0] != 0][:5]
    _same(mixed, expected)


@pytest.mark.parametrize("text, message", [("", "some words"), ("   ", "some words"), (3, "some words"),
                                           ("x" * 1001, "at most 1000 characters")])
def test_a_bad_text_says_what_to_send(siglip_engine, text, message):
    with pytest.raises(InvalidFieldError, match=message):
        siglip_engine.search_text(text)
    with pytest.raises(InvalidFieldError, match=message):
        siglip_engine.search_examples([Example.of_text(text)])


def test_a_text_with_a_box_is_refused(siglip_engine):
    with pytest.raises(InvalidBoxError, match="not a text"):
        siglip_engine.search_text(TEXT, query=Query.of(box=[0, 0, 0.5, 0.5]))


def test_an_index_without_a_text_tower_refuses_text_in_one_line(engine):
    for ask in (lambda: engine.search_text(TEXT), lambda: engine.search_examples([Example.of_text(TEXT)])):
        with pytest.raises(TextQueriesUnsupportedError, match="has no text tower.*image-text preset") as exc:
            ask()
        assert "\n" not in str(exc.value)


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([IMGSEARCH, *args], capture_output=True, text=True, timeout=300, env=env)


def test_the_cli_searches_by_text_and_by_text_examples(siglip_engine, siglip_index):
    run = _cli("search", "--index", str(siglip_index), "--text", TEXT, "--json", "-k", "4")
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["query"] == TEXT
    assert [r["id"] for r in answer["results"]] == [h.id for h in siglip_engine.search_text(TEXT, k=4)]
    run = _cli("search", "--index", str(siglip_index), "--text", TEXT, "--unlike-text", "blue sky", "--json",
               "-k", "4")
    assert run.returncode == 0, run.stderr
    expected = siglip_engine.search_examples([Example.of_text(TEXT)], [Example.of_text("blue sky")], k=4)
    assert [r["id"] for r in json.loads(run.stdout)["results"]] == [h.id for h in expected]
    empty = _cli("search", "--index", str(siglip_index), "--text", " ")
    assert empty.returncode != 0 and len(empty.stderr.strip().splitlines()) == 1 and "some words" in empty.stderr


def test_the_cli_says_in_one_line_that_an_index_without_a_text_tower_takes_no_text(built_index):
    run = _cli("search", "--index", str(built_index[0]), "--text", TEXT, env=fake_model_env())
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no text tower" in lines[0], run.stderr


def test_the_api_batch_and_client_search_by_text(siglip_engine, siglip_server):
    from imgsearch.search.client import SearchClient
    from imgsearch.search.client.replies import SearchAPIError

    expected = [h.id for h in siglip_engine.search_text(TEXT, k=5, offset=1)]
    reply = requests.post(f"{siglip_server.url}/api/search", json={"text": TEXT, "k": 5, "offset": 1}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert [r["id"] for r in reply.json()["results"]] == expected
    assert reply.json()["query"] == {"type": "text", "text": TEXT}
    form = requests.post(f"{siglip_server.url}/api/search", files={"text": (None, TEXT), "k": (None, "5"),
                                                                   "offset": (None, "1")}, timeout=60)
    assert form.status_code == 200 and [r["id"] for r in form.json()["results"]] == expected
    examples = requests.post(f"{siglip_server.url}/api/search", timeout=60, json={
        "positive": [{"text": TEXT}], "negative": [{"text": "blue sky", "weight": 2}], "k": 5})
    wanted = siglip_engine.search_examples([Example.of_text(TEXT)], [Example.of_text("blue sky", 2.0)], k=5)
    assert examples.status_code == 200 and [r["id"] for r in examples.json()["results"]] == [h.id for h in wanted]
    batch = requests.post(f"{siglip_server.url}/api/search/batch", timeout=60, json={"queries": [
        {"text": TEXT, "k": 5, "offset": 1}, {"text": ""}, {"text": TEXT, "id": 3}, {"id": 2, "k": 2}]})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["id"] for r in results[0]] == expected
    assert results[1]["status"] == 400 and results[1]["error"]["code"] == "invalid_text"
    assert results[2]["status"] == 400 and "not both" in results[2]["error"]["message"]
    assert len(results[3]) == 2
    for body, code in [({"text": 5}, "invalid_text"), ({"text": TEXT, "box": [0, 0, 1, 1]}, "invalid_box"),
                       ({"positive": [{"text": ""}]}, "invalid_text")]:
        bad = requests.post(f"{siglip_server.url}/api/search", json=body, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == code, (body, bad.text)
    with SearchClient(siglip_server.url, timeout=60) as client:
        assert [h.id for h in client.search_text(TEXT, k=5, offset=1).results] == expected
        assert [h.id for h in client.search_examples(
            [Example.of_text(TEXT)], [Example.of_text("blue sky", 2.0)], k=5).results] == [h.id for h in wanted]
        many = client.search_many([{"text": TEXT}, Example.of_text(TEXT)], k=5, offset=1)
        assert [[h.id for h in m.results] for m in many] == [expected, expected]
        with pytest.raises(SearchAPIError, match="some words"):
            client.search_text("")


def test_the_api_and_client_answer_400_on_an_index_without_a_text_tower(live_server, client):
    from imgsearch.search.client.replies import SearchAPIError

    for body in ({"text": TEXT}, {"positive": [{"text": TEXT}]}):
        reply = requests.post(f"{live_server.url}/api/search", json=body, timeout=60)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "text_queries_unsupported"
        assert "no text tower" in reply.json()["error"]["message"]
    batch = requests.post(f"{live_server.url}/api/search/batch", json={"queries": [{"text": TEXT}]}, timeout=60)
    assert batch.status_code == 200 and batch.json()["results"][0]["status"] == 400
    with pytest.raises(SearchAPIError) as exc:
        client.search_text(TEXT)
    assert exc.value.code == "text_queries_unsupported"


def test_openapi_describes_text_queries(live_server):
    spec = requests.get(f"{live_server.url}/api/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    assert schemas["SearchQuery"]["properties"]["text"]["maxLength"] == 1000
    assert "text" in schemas["Example"]["properties"]
    search = spec["paths"]["/api/search"]["post"]
    assert "text" in search["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert "text_queries_unsupported" in search["responses"]["400"]["description"]
