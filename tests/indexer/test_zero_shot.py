"""Zero-shot heads (issue 33, item 4): a head from class names alone, by the text tower of the index's encoder,
stored in the existing head format so classify and head-aware search use it unchanged.

On the labelled emoji embedded by the two-layer SigLIP with random weights (``siglip_index``): the head's
probabilities must be the softmax of the scaled cosines between the stored image vectors and the class
directions (each class's prompts embedded by keras_hub itself, averaged, re-normalised), computed here by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.manifest import TextQueriesUnsupportedError
from imgsearch.indexer.run.zero_shot import TEMPLATES, fit_scale, parse_classes, softmax_nll, zero_shot_head
from tests.helpers import fake_model_env
from tests.hub_presets import SIGLIP_SCALE

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
CLASSES = ["Activities", "Flags", "Food & Drink", "Animals & Nature"]


@pytest.mark.parametrize("raw, message", [("cat", "2 to 1000 classes"), ("cat,,dog", "an empty name"),
                                          ("cat, dog,cat", "named twice"), ("[1, 2]", "must be names"),
                                          ("[\"cat\"", "not a JSON list"), (5, "must be names")])
def test_bad_class_names_say_what_to_change(raw, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_classes(raw)
    assert parse_classes(" cat , dog,car ") == ["cat", "dog", "car"]
    assert parse_classes('["a, b", "c"]') == ["a, b", "c"]  # a JSON list: names with commas


def test_the_fitted_scale_minimises_the_nll():
    rng = np.random.default_rng(0)
    cosines, y = rng.uniform(-0.3, 0.3, (200, 3)), rng.integers(0, 3, 200)
    cosines[np.arange(200), y] += 0.1  # informative, not separable: a finite best temperature
    s = fit_scale(cosines, y)
    assert softmax_nll(cosines, y, s) <= min(softmax_nll(cosines, y, s * 1.05), softmax_nll(cosines, y, s / 1.05))


def _reference_directions(preset: str, classes: list[str]) -> np.ndarray:
    """(C, D) each class's prompts through keras_hub's own preprocessor and text tower, averaged, normalised."""
    import keras_hub

    model = keras_hub.models.SigLIPBackbone.from_preset(preset)
    prompts = [t.format(c) for c in classes for t in TEMPLATES]
    tokens = keras_hub.models.SigLIPPreprocessor.from_preset(preset)(
        {"images": np.zeros((len(prompts), 28, 28, 3), np.float32), "prompts": prompts})["token_ids"]
    v = np.asarray(model.get_text_embeddings(tokens)).reshape(len(classes), len(TEMPLATES), -1)
    v = v / np.linalg.norm(v, axis=2, keepdims=True)
    mean = v.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def test_a_zero_shot_heads_probabilities_are_the_softmax_of_scaled_cosines(siglip_index, tmp_path):
    from imgsearch.search.engine import SearchEngine

    index = shutil.copytree(siglip_index, tmp_path / "idx")
    head = zero_shot_head(index, "zs", ",".join(CLASSES))
    assert head.model == "zero-shot" and head.classes == CLASSES
    assert head.calibration["scale"] == pytest.approx(SIGLIP_SCALE, rel=1e-5)  # the preset's logit scale
    engine = SearchEngine.open(index)
    directions = _reference_directions(engine.manifest["backbone"]["name"], CLASSES)
    ids = [int(i) for i in engine.ids[:12]]
    for i in ids:
        cosines = directions @ engine.vector(i)  # stored vectors are unit length
        z = np.exp(SIGLIP_SCALE * cosines - (SIGLIP_SCALE * cosines).max())
        expected = dict(zip(CLASSES, z / z.sum()))
        got = dict(engine.classify_id(i, "zs", top=len(CLASSES)))
        assert got == pytest.approx(expected, abs=1e-5), i
    # measured on every image labelled with a class name (nothing was trained on them)
    labelled = [h for h in engine.get_many(engine.ids) if h.label in CLASSES]
    predicted = [CLASSES[int(np.argmax(directions @ engine.vector(h.id)))] for h in labelled]
    assert head.metrics["val_images"] == len(labelled)
    assert head.metrics["validation"]["accuracy"] == pytest.approx(
        np.mean([p == h.label for p, h in zip(predicted, labelled)]))
    # beside it, the kNN vote on the same images (leave-one-out): the evaluate report's kNN over those images
    from imgsearch.search.evaluate.metrics import knn_loo_accuracy

    vectors = np.stack([engine.vector(h.id) for h in labelled])
    assert head.metrics["knn_validation"]["accuracy"] == pytest.approx(
        knn_loo_accuracy(vectors, [h.label for h in labelled], head.metrics["knn_k"]))
    # head-aware search uses it as any head
    assert len(engine.search_id(ids[0], k=5, head="zs")) == 5
    assert len(engine.search_text("a photo of a flag", k=5, head="zs")) == 5


def test_the_scale_can_be_fitted_on_labels_or_given(siglip_index, tmp_path):
    index = shutil.copytree(siglip_index, tmp_path / "idx")
    fitted = zero_shot_head(index, "fitted", CLASSES, scale="labels")
    s = fitted.calibration["scale"]
    assert "fitted on" in fitted.calibration["how"] and 1 <= s <= 1000
    given = zero_shot_head(index, "given", CLASSES, scale=3)
    assert given.calibration["scale"] == 3
    # a temperature changes the probabilities, never the most probable class; the fitted one the least NLL
    assert fitted.metrics["validation"] == given.metrics["validation"]
    assert fitted.metrics["nll"] <= given.metrics["nll"]
    assert zero_shot_head(index, "bare", CLASSES, templates=["{}"]).calibration["templates"] == ["{}"]
    # the evaluate report shows it beside the index's other figures: measured on every labelled image of its classes
    from imgsearch.search.evaluate.metrics import evaluate_index
    from imgsearch.search.evaluate.report import render_html

    results = evaluate_index(index)
    assert results["heads"]["given"]["validation"] == given.metrics["validation"]
    assert results["heads"]["given"]["labels_source"] == "zero-shot: class names"
    html = render_html(results, {})
    assert "Head given" in html and "made from the class names alone (zero-shot)" in html
    assert "leave-one-out, same images" in html
    with pytest.raises(InvalidInputError, match="one \\{\\}"):
        zero_shot_head(index, "bad", CLASSES, templates=["a photo"])
    with pytest.raises(InvalidInputError, match="'preset', 'labels' or a number"):
        zero_shot_head(index, "bad", CLASSES, scale="hot")
    with pytest.raises(InvalidInputError, match="no indexed image is labelled"):
        zero_shot_head(index, "bad", ["cat", "dog"], scale="labels")


def test_the_cli_makes_a_zero_shot_head_and_refuses_an_index_without_a_text_tower(siglip_index, built_index,
                                                                                  tmp_path):
    index = shutil.copytree(siglip_index, tmp_path / "idx")
    run = subprocess.run([IMGSEARCH, "train-head", "--index", str(index), "--name", "zs", "--zero-shot",
                          ",".join(CLASSES), "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["model"] == "zero-shot" and answer["classes"] == CLASSES
    shown = subprocess.run([IMGSEARCH, "train-head", "--index", str(index), "--name", "zs2", "--zero-shot",
                            "cat,dog"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "not measured" in shown.stdout and "learned logit scale" in shown.stdout
    plain = shutil.copytree(built_index[0], tmp_path / "plain")
    refused = subprocess.run([IMGSEARCH, "train-head", "--index", str(plain), "--name", "zs", "--zero-shot",
                              "cat,dog"], capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "no text tower" in lines[0], refused.stderr
    with pytest.raises(TextQueriesUnsupportedError):
        zero_shot_head(plain, "zs", "cat,dog")


def test_the_api_and_client_make_a_zero_shot_head_that_classify_serves(siglip_index, live_server, tmp_path):
    import requests

    from imgsearch.search.client import SearchClient
    from imgsearch.search.client.replies import SearchAPIError
    from imgsearch.web import create_app
    from tests.helpers import LiveServer

    index = shutil.copytree(siglip_index, tmp_path / "idx")
    server = LiveServer(create_app({"INDEX_DIR": str(index), "WARM_UP": False}))
    try:
        made = requests.post(f"{server.url}/api/heads", json={"name": "zs", "zero_shot": CLASSES, "scale": 5},
                             timeout=300)
        assert made.status_code == 201, made.text
        head = made.json()["head"]
        assert head["model"] == "zero-shot" and head["calibration"]["scale"] == 5
        classified = requests.post(f"{server.url}/api/classify", json={"id": 0, "head": "zs", "top": 4}, timeout=60)
        assert classified.status_code == 200 and len(classified.json()["predictions"]) == 4
        for body, code in [({"name": "x", "zero_shot": ["cat"]}, "invalid_classes"),
                           ({"name": "x", "zero_shot": ["cat", "dog"], "scale": "hot"}, "invalid_scale"),
                           ({"name": "x", "zero_shot": ["cat", "dog"], "templates": ["no slot"]}, "invalid_templates"),
                           ({"name": "x", "zero_shot": ["cat", "dog"], "examples": {}}, "invalid_field")]:
            bad = requests.post(f"{server.url}/api/heads", json=body, timeout=60)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == code, (body, bad.text)
        with SearchClient(server.url, timeout=300) as client:
            summary = client.create_head("zs2", zero_shot=["cat", "dog"], templates=["a {}"])
            assert summary["calibration"]["templates"] == ["a {}"]
            assert len(client.classify_id(1, "zs2").predictions) == 2  # classify serves it at once
    finally:
        server.close()
    refused = requests.post(f"{live_server.url}/api/heads", json={"name": "zs", "zero_shot": ["cat", "dog"]},
                            timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "text_queries_unsupported"
    with SearchClient(live_server.url, timeout=60) as client, pytest.raises(SearchAPIError) as exc:
        client.create_head("zs", zero_shot=["cat", "dog"])
    assert exc.value.code == "text_queries_unsupported"
