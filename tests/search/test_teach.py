"""Few-shot heads taught from examples: the fitting (synthetic vectors), the command, and the real server.

The server part runs the production server on loopback over a copy of the session's
built index: teach a head by POST /api/heads from ids, classify and search with it,
delete it; refused (403) where training is not allowed; two trainings at once.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from imgsearch.indexer.folder.heads import list_heads, load_head
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.learn import fewshot
from imgsearch.indexer.synthetic import ClusteredEmbeddings
from tests.helpers import LiveServer

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


def _clustered(per_class: int, seed: int, classes: int = 4, spread: float = 0.6):
    """Vectors of ``classes`` synthetic clusters, ``per_class`` each: x (n, 1280), y (n,)."""
    gen = ClusteredEmbeddings(clusters=classes, spread=spread, seed=7)
    rng = np.random.default_rng(seed)
    z = gen.centres[np.repeat(np.arange(classes), per_class)]
    z = z + gen.spread * rng.standard_normal(z.shape, dtype=np.float32)
    x = np.maximum(z @ gen.layer + gen.bias, 0)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(classes), per_class)


@pytest.mark.parametrize("model", fewshot.MODELS)
def test_a_handful_of_examples_makes_a_calibrated_linear_head(model):
    x, y = _clustered(5, seed=1, spread=2.5)  # overlapping clusters: about 3 in 4 right
    xt, yt = _clustered(100, seed=2, spread=2.5)
    fit = fewshot.fit_linear(x, y, model)
    assert fit.weights.shape == (1280, 4) and fit.bias.shape == (4,)
    logits = xt @ fit.weights + fit.bias
    accuracy = (logits.argmax(axis=1) == yt).mean()
    assert accuracy > 0.65
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert 0.3 < p.max(axis=1).mean() < 0.95  # neither uniform nor certain of everything
    if model == "svm":  # out-of-fold decision values: a fitted temperature, folded into the weights
        assert fit.calibration["method"] == "temperature" and "out-of-fold" in fit.calibration["fitted_on"]
        assert fit.calibration["temperature"] != fewshot.FALLBACK_TEMPERATURE
        assert abs(p.max(axis=1).mean() - accuracy) < 0.15  # as confident as it is right, about


def test_one_example_per_class_trains_and_says_what_it_cannot_measure():
    x, y = _clustered(1, seed=3, classes=3)
    fit = fewshot.fit_linear(x, y, "svm")
    assert fit.calibration["temperature"] == fewshot.FALLBACK_TEMPERATURE
    assert "single example" in fit.calibration["fitted_on"]
    assert ((x @ fit.weights + fit.bias).argmax(axis=1) == y).all()
    report = fewshot.cross_validated(x, y, ["a", "b", "c"], "svm")
    assert report["validation"] is None and report["measured_examples"] == 0
    assert report["examples_per_class"] == {"a": 1, "b": 1, "c": 1}
    assert len(report["warnings"]) == 3 and "class 'a' has 1 example: too few to measure" in report["warnings"][0]


def test_cross_validation_never_holds_out_a_single_example_and_measures_the_rest():
    x, y = _clustered(6, seed=4, classes=3)
    x, y = x[:-5], y[:-5]  # class 2 keeps a single example
    folds, n_folds = fewshot.fold_of(y)
    assert n_folds == 5 and (folds[y == 2] == -1).all() and (folds[y != 2] >= 0).all()
    for f in range(n_folds):  # every fold leaves every class something to train on
        assert set(y[folds != f]) == {0, 1, 2}
    report = fewshot.cross_validated(x, y, ["a", "b", "c"], "softmax")
    assert report["measured_examples"] == 12 and report["validation"]["accuracy"] > 0.9
    assert report["knn_validation"] is not None
    assert any("'c' has 1 example" in w for w in report["warnings"])
    assert any("unbalanced" in w for w in report["warnings"])


# ------------------------------------------------------------------ from examples, on a real index
@pytest.fixture(scope="module")
def teach_index(tmp_path_factory, cnn_index):
    """A copy of the efficientnet-lite0 index: a head taught from five flags must know a flag it never saw."""
    index_dir = tmp_path_factory.mktemp("teach") / "idx"
    shutil.copytree(cnn_index[0], index_dir)
    return index_dir


def _ids_by_label(index_dir) -> dict[str, list[int]]:
    store = EmbeddingStore(index_dir)
    t = store.read_table(store.read_manifest()["shards"], ["id", "label"])
    out: dict[str, list[int]] = {}
    for i, label in zip(t.column("id").to_pylist(), texts_of(t, "label")):
        out.setdefault(label, []).append(i)
    return out


def _paths_by_id(index_dir) -> dict[int, str]:
    store = EmbeddingStore(index_dir)
    t = store.read_table(store.read_manifest()["shards"], ["id", "path"])
    return dict(zip(t.column("id").to_pylist(), texts_of(t, "path")))


@pytest.mark.slow
def test_train_head_from_an_examples_file(teach_index, tmp_path):
    import subprocess

    ids = _ids_by_label(teach_index)
    paths = _paths_by_id(teach_index)
    examples = {"flag": ids["emoji/Flags"][:4] + [paths[ids["emoji/Flags"][4]]],  # ids and an indexed path
                "photo": ids["photos"][:5]}
    file = tmp_path / "examples.json"
    file.write_text(json.dumps(examples))
    done = subprocess.run([IMGSEARCH, "train-head", "--index", str(teach_index), "--name", "fs", "--model", "svm",
                           "--examples", str(file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "head 'fs' (svm): 2 classes, trained on 10 embeddings" in done.stdout
    assert "examples per class: flag 5, photo 5" in done.stdout and "validation accuracy" in done.stdout
    head = load_head(teach_index, "fs")
    assert head.model == "svm" and head.calibration["method"] == "temperature"
    assert head.metrics["examples_per_class"] == {"flag": 5, "photo": 5} and head.metrics["folds"] == 5
    # a flag it never saw is a flag, with its search index written in the same step
    from imgsearch.search.engine import SearchEngine

    engine = SearchEngine.open(teach_index)
    assert engine.classify_id(ids["emoji/Flags"][5], "fs", top=1)[0][0] == "flag"
    assert engine.search_id(ids["emoji/Flags"][0], 3, head="fs")
    file.write_text(json.dumps({"flag": [10**9], "photo": ids["photos"][:1]}))
    bad = subprocess.run([IMGSEARCH, "train-head", "--index", str(teach_index), "--name", "fs2", "--examples",
                          str(file)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"Error: examples['flag'][0]: no image with id {10**9} in the index"]
    assert "fs2" not in list_heads(teach_index)


# ------------------------------------------------------------------ the real server
@pytest.fixture(scope="module")
def teach_server(teach_index):
    from imgsearch.web import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(teach_index), "WARM_UP": False}))
    yield server
    server.close()


@pytest.mark.slow
def test_teach_classify_search_and_delete_through_the_server(teach_server, teach_index):
    ids = _ids_by_label(teach_index)
    flags, smileys = ids["emoji/Flags"], ids["emoji/Smileys & Emotion"]
    body = {"name": "style", "model": "softmax",
            "examples": {"flag": flags[:5], "smiley": [{"id": i} for i in smileys[:5]]}}
    r = requests.post(f"{teach_server.url}/api/heads", json=body, timeout=120)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith("/api/heads/style")
    data = r.json()
    assert data["training"]["allowed"] and "loopback" in data["training"]["why"]
    head = data["head"]
    assert head["classes"] == ["flag", "smiley"] and head["model"] == "softmax"
    assert head["metrics"]["examples_per_class"] == {"flag": 5, "smiley": 5}
    assert head["metrics"]["validation"]["accuracy"] >= 0.8
    # served at once, without a restart: classify an unseen flag, search head-aware
    r = requests.post(f"{teach_server.url}/api/classify", json={"id": flags[5], "head": "style"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["class"] == "flag"
    r = requests.post(f"{teach_server.url}/api/search", json={"id": flags[5], "head": "style", "k": 3}, timeout=30)
    assert r.status_code == 200, r.text
    assert all(h["label"] == "emoji/Flags" for h in r.json()["results"][:3])
    listed = requests.get(f"{teach_server.url}/api/heads", timeout=30).json()
    assert "style" in [h["name"] for h in listed["heads"]] and listed["training"]["allowed"]
    # retrained under the same name with other classes: the server answers with the new one
    body["examples"] = {"flag": flags[:3], "smiley": smileys[:3], "photo": ids["photos"][:3]}
    assert requests.post(f"{teach_server.url}/api/heads", json=body, timeout=120).status_code == 201
    r = requests.post(f"{teach_server.url}/api/classify", json={"id": flags[5], "head": "style", "top": 5}, timeout=30)
    assert sorted(p["class"] for p in r.json()["predictions"]) == ["flag", "photo", "smiley"]
    r = requests.delete(f"{teach_server.url}/api/heads/style", timeout=60)
    assert r.status_code == 200 and r.json()["deleted"] == "style"
    r = requests.post(f"{teach_server.url}/api/classify", json={"id": flags[5], "head": "style"}, timeout=30)
    assert r.status_code == 400 and "no head named 'style'" in r.json()["error"]["message"]
    assert requests.delete(f"{teach_server.url}/api/heads/style", timeout=30).status_code == 404


@pytest.mark.parametrize("examples, status, message", [
    ({"flag": [10**9], "photo": [0]}, 400, "examples['flag'][0]: no image with id 1000000000 in the index"),
    ({"flag": [0], "photo": []}, 400, "class 'photo' has no examples"),
    ({"flag": [0, 1]}, 400, "a head needs at least 2 classes, got 1"),
    ({"flag": [0] * 600, "photo": [1] * 600}, 413, "at most 1000 examples in one request, got 1200"),
    ({"flag": ["zero"], "photo": [1]}, 400, "examples['flag'][0]: an example is an indexed id"),
    ({"flag": [{"vector": [1, 2]}], "photo": [1]}, 400, "examples['flag'][0]: query vector has shape (2,)"),
    ({"flag": [0], "photo": [0]}, 400, "image 0 is an example of both 'flag' (examples['flag'][0]) and 'photo'"),
])
def test_bad_examples_are_refused_with_what_to_change(teach_server, examples, status, message):
    r = requests.post(f"{teach_server.url}/api/heads", json={"name": "bad", "examples": examples}, timeout=60)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert "bad" not in requests.get(f"{teach_server.url}/api/heads", timeout=30).json()["heads"]


@pytest.mark.slow
def test_two_trainings_at_once_leave_a_whole_folder(teach_server, teach_index):
    ids = _ids_by_label(teach_index)
    bodies = [{"name": "twin", "examples": {"flag": ids["emoji/Flags"][:4], "photo": ids["photos"][:4]}},
              {"name": "twin", "model": "svm",
               "examples": {"a": ids["emoji/Flags"][:3], "b": ids["photos"][:3], "c": ids["emoji/Smileys & Emotion"][:3]}},
              {"name": "other", "examples": {"flag": ids["emoji/Flags"][:2], "photo": ids["photos"][:2]}}]
    answers = [None] * len(bodies)

    def post(i):
        answers[i] = requests.post(f"{teach_server.url}/api/heads", json=bodies[i], timeout=200)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
    report = verify_index(teach_index)
    assert report.ok, report
    twin = load_head(teach_index, "twin")  # whole: one of the two, its search index beside it
    assert twin.classes in (["flag", "photo"], ["a", "b", "c"])
    r = requests.post(f"{teach_server.url}/api/search", json={"id": ids["photos"][0], "head": "twin", "k": 2},
                      timeout=30)
    assert r.status_code == 200, r.text


def test_a_server_not_allowed_to_train_refuses_with_why(teach_index):
    """Off loopback, teaching and deleting need a write key (web/auth.py; tests/web/test_keys.py has the rest)."""
    from imgsearch.web import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(teach_index), "WARM_UP": False}))
    server.app.config["BOUND_HOST"] = "0.0.0.0"
    try:
        r = requests.post(f"{server.url}/api/heads", json={"name": "x", "examples": {"a": [0], "b": [1]}}, timeout=30)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "key_required" and "need a write key" in r.json()["error"]["message"]
        assert requests.delete(f"{server.url}/api/heads/x", timeout=30).status_code == 401
        assert requests.get(f"{server.url}/api/heads", timeout=30).json()["training"]["allowed"] is False
    finally:
        server.close()
    assert "x" not in list_heads(teach_index)


@pytest.mark.slow
def test_the_client_teaches_lists_and_deletes_and_openapi_describes_it(teach_server, teach_index):
    from imgsearch.search.client.http_client import SearchAPIError, SearchClient

    ids = _ids_by_label(teach_index)
    with SearchClient(teach_server.url) as client:
        head = client.create_head("by-client", {"flag": ids["emoji/Flags"][:2], "photo": ids["photos"][:1]},
                                  model="svm")
        assert head["model"] == "svm" and head["metrics"]["examples_per_class"] == {"flag": 2, "photo": 1}
        assert any("'photo' has 1 example" in w for w in head["metrics"]["warnings"])
        assert "by-client" in [h["name"] for h in client.heads()["heads"]]
        assert client.classify_id(ids["emoji/Flags"][3], "by-client").predictions[0].label == "flag"
        client.delete_head("by-client")
        with pytest.raises(SearchAPIError) as caught:
            client.delete_head("by-client")
        assert caught.value.status == 404
    spec = requests.get(f"{teach_server.url}/api/openapi.json", timeout=30).json()
    assert set(spec["paths"]["/api/heads"]) == {"get", "post"} and "403" in spec["paths"]["/api/heads"]["post"]["responses"]
    assert "delete" in spec["paths"]["/api/heads/{name}"]


@pytest.mark.parametrize("config, allowed, why", [
    ({"BOUND_HOST": "127.0.0.1"}, True, "bound to loopback (127.0.0.1)"),
    ({"BOUND_HOST": "::1"}, True, "bound to loopback (::1)"),
    ({"BOUND_HOST": "0.0.0.0"}, False, "listens on 0.0.0.0, beyond this machine"),
    ({}, False, "address is not known"),
])
def test_who_may_train(built_index, config, allowed, why):
    from imgsearch.web import create_app

    app = create_app({"INDEX_DIR": str(built_index[0]), "WARM_UP": False, **config})
    body = app.test_client().get("/api/heads").get_json()
    assert body["training"]["allowed"] is allowed and why in body["training"]["why"]
    if not allowed:
        r = app.test_client().post("/api/heads", json={"name": "x", "examples": {"a": [0], "b": [1]}})
        assert r.status_code == 401 and why in r.get_json()["error"]["message"]


def test_a_training_that_finds_another_writer_gets_409_and_changes_nothing(teach_server, teach_index):
    import subprocess

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom imgsearch.indexer.folder.lock import writer_lock\n"
                               f"with writer_lock({str(teach_index)!r}, command='imgsearch index (test)'):\n"
                               "    print('held', flush=True)\n    time.sleep(120)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        ids = _ids_by_label(teach_index)
        body = {"name": "blocked", "examples": {"flag": ids["emoji/Flags"][:2], "photo": ids["photos"][:2]}}
        r = requests.post(f"{teach_server.url}/api/heads", json=body, timeout=120)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "index_busy"
        assert f"is being written by pid {holder.pid}" in r.json()["error"]["message"]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert "blocked" not in list_heads(teach_index)


@pytest.mark.slow
def test_train_head_from_labelled_folders_with_the_svm(teach_index):
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.run.heads import train_head

    head = train_head(teach_index, "folders-svm", config=HeadTrainingConfig(model="svm", val_fraction=0.3))
    assert head.model == "svm" and head.calibration["method"] == "temperature"
    m = head.metrics
    assert m["model"] == "svm" and sum(m["examples_per_class"].values()) == m["train_images"]
    assert m["validation"]["accuracy"] >= m["knn_validation"]["accuracy"] - 0.1
    assert load_head(teach_index, "folders-svm").calibration == head.calibration
