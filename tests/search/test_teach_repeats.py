"""Examples are counted once (issue 30, item 5): an image given again, by its id, its path or the same vector,
collapses to one example, the report says how many repeats were dropped, and cross-validation folds split by
image; an image given for two classes is refused, naming it.  Through the Python function, the command line
(a labels CSV too) and POST /api/heads on a real server over a copy of the fake-model index."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsearch.indexer.folder.heads import HeadError, list_heads
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.run.teach import examples_embeddings, train_head_from_examples
from tests.helpers import LiveServer, fake_model_env

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


@pytest.fixture(scope="module")
def repeats_index(tmp_path_factory, built_index):
    index_dir = tmp_path_factory.mktemp("teach-repeats") / "idx"
    shutil.copytree(built_index[0], index_dir)
    return index_dir


@pytest.fixture(scope="module")
def table(repeats_index):
    store = EmbeddingStore(repeats_index)
    t = store.read_table(store.read_manifest()["shards"], ["id", "path", "label"])
    return list(zip(t.column("id").to_pylist(), texts_of(t, "path"), texts_of(t, "label")))


@pytest.fixture(scope="module")
def chosen(table) -> dict[str, list[int]]:
    """Two classes of 6 indexed images each (two labels of the corpus)."""
    by_label: dict[str, list[int]] = {}
    for i, _, label in table:
        by_label.setdefault(label, []).append(i)
    big = sorted((label for label in by_label if len(by_label[label]) >= 6), key=lambda x: -len(by_label[x]))
    return {"a": by_label[big[0]][:6], "b": by_label[big[1]][:6]}


def _figures(head) -> dict:
    m = head.metrics
    return {k: m[k] for k in ("examples_per_class", "train_images", "val_images", "folds", "measured_examples",
                              "validation", "knn_validation", "example_ids")}


def test_examples_repeated_seven_times_train_and_measure_as_once(repeats_index, chosen, table):
    path_of = {i: p for i, p, _ in table}
    once = train_head_from_examples(repeats_index, "once", chosen)
    # each image 7 times: as an id, {"id": ...} and its path, the list given again after itself
    forms = {cls: [i for i in ids] + [{"id": i} for i in ids] + [path_of[i] for i in ids] + ids * 4
             for cls, ids in chosen.items()}
    repeated = train_head_from_examples(repeats_index, "repeated", forms)
    assert _figures(repeated) == _figures(once)
    assert repeated.metrics["examples_per_class"] == {"a": 6, "b": 6}
    assert repeated.metrics["examples_given"] == 84 and repeated.metrics["repeats_dropped"] == 72
    assert once.metrics["repeats_dropped"] == 0
    assert (repeated.weights == once.weights).all()


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_any_repeats_collapse_to_the_images_given(repeats_index, chosen, data):
    manifest = EmbeddingStore(repeats_index).read_manifest()
    plain = examples_embeddings(repeats_index, chosen, manifest)
    noisy = {}
    for cls, ids in chosen.items():
        items = list(ids)  # every image once, in order, then repeats anywhere after its first
        for _ in range(data.draw(st.integers(0, 12), label=f"repeats of {cls}")):
            at = data.draw(st.integers(0, len(items) - 1))
            copy = items[at] if isinstance(items[at], int) else items[at]["id"]
            items.insert(data.draw(st.integers(at + 1, len(items))), data.draw(st.sampled_from([copy, {"id": copy}])))
        noisy[cls] = items
    got = examples_embeddings(repeats_index, noisy, manifest)
    assert got.ids == plain.ids and (got.y == plain.y).all() and (got.x == plain.x).all()
    assert got.given == sum(len(v) for v in noisy.values()) and got.repeats == got.given - len(plain.ids)


def test_a_repeated_vector_counts_once_and_one_image_in_two_classes_is_refused(repeats_index, chosen, table):
    manifest = EmbeddingStore(repeats_index).read_manifest()
    vector = [1.0] + [0.0] * (manifest["dim"] - 1)
    twice = examples_embeddings(repeats_index, {"a": chosen["a"] + [{"vector": vector}, {"vector": [2 * v for v in
                                                                                                    vector]}],
                                                "b": chosen["b"]}, manifest)
    assert twice.repeats == 1 and len(twice.y) == 13  # the same direction, scaled: one vector
    path_of = {i: p for i, p, _ in table}
    one = chosen["a"][0]
    for other in (one, {"id": one}, path_of[one]):
        with pytest.raises(HeadError, match=rf"image {one} is an example of both 'a' \(examples\['a'\]\[0\]\) and "
                                            r"'b'; an image teaches one class"):
            examples_embeddings(repeats_index, {"a": chosen["a"], "b": chosen["b"] + [other]}, manifest)
    with pytest.raises(HeadError, match="this vector is an example of both 'a'"):
        examples_embeddings(repeats_index, {"a": [{"vector": vector}, one], "b": [{"vector": vector}]}, manifest)


def test_the_command_line_reports_the_repeats_and_a_labels_file_refuses_two_labels(repeats_index, chosen, table,
                                                                                    tmp_path):
    file = tmp_path / "examples.json"
    file.write_text(json.dumps({cls: ids * 7 for cls, ids in chosen.items()}))
    # an SVM head: how repeats are counted does not depend on the classifier (softmax: the test above), and the
    # child then trains without importing TensorFlow
    done = subprocess.run([IMGSEARCH, "train-head", "--index", str(repeats_index), "--name", "cli", "--examples",
                           str(file), "--model", "svm"], capture_output=True, text=True, timeout=300,
                          env=fake_model_env())
    assert done.returncode == 0, done.stderr
    assert "examples per class: a 6, b 6" in done.stdout
    assert "72 of the 84 examples given repeated an image given before: each image counted once" in done.stdout
    path = table[0][1]
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\n{path},x\n{table[1][1]},y\n{path},x\n{path},y\n")
    bad = subprocess.run([IMGSEARCH, "train-head", "--index", str(repeats_index), "--name", "csv", "--labels",
                          str(csv)], capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"Error: {csv}: {path} is labelled both 'x' and 'y'; an image "
                                               "teaches one class"]
    assert "csv" not in list_heads(repeats_index)


@pytest.mark.slow  # 5 s of CPU or more with its child processes (tests/cpu_report.py)
def test_post_heads_counts_repeated_ids_once(repeats_index, chosen, monkeypatch):
    from imgsearch.web import create_app

    monkeypatch.setenv("PYTHONPATH", fake_model_env()["PYTHONPATH"])  # the training child knows the fake model
    server = LiveServer(create_app({"INDEX_DIR": str(repeats_index), "WARM_UP": False}))
    try:
        url = f"{server.url}/api/heads"
        # SVM heads, as on the command line above: the training child then imports no TensorFlow
        once = requests.post(url, json={"name": "web-once", "model": "svm", "examples": chosen}, timeout=300)
        assert once.status_code == 201, once.text
        body = {"name": "web-7x", "model": "svm", "examples": {cls: ids * 7 for cls, ids in chosen.items()}}
        repeated = requests.post(url, json=body, timeout=300)
        assert repeated.status_code == 201, repeated.text
        m, m1 = repeated.json()["head"]["metrics"], once.json()["head"]["metrics"]
        assert m["examples_per_class"] == {"a": 6, "b": 6} and m["repeats_dropped"] == 72
        assert m["validation"] == m1["validation"] and m["measured_examples"] == m1["measured_examples"] == 12
        one = chosen["a"][0]
        clash = requests.post(url, json={"name": "web-bad", "model": "svm",
                                         "examples": {"a": chosen["a"], "b": [{"id": one}]}},
                              timeout=300)
        assert clash.status_code == 400, clash.text
        assert f"image {one} is an example of both 'a'" in clash.json()["error"]["message"]
    finally:
        server.close()
