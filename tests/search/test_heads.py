"""Classification heads on a small real index: training, storage, refusal, classify via CLI, API and client.

The plumbing runs on the fake model's index; a test whose head must tell a photo from an emoji (what the
pictures show) runs on the efficientnet-lite0 index."""

import json
import shutil

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from imgsearch.indexer.folder.heads import HeadError, list_heads, load_head
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.learn.classifiers import HeadTrainingConfig, stratified_split
from imgsearch.indexer.run.heads import train_head
from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.pixel_model import DIM, NAME


def test_head_is_stored_with_metrics(headed_index):
    assert list_heads(headed_index) == ["cat"]
    head = load_head(headed_index, "cat")
    assert head.backbone == NAME and head.dim == DIM
    assert head.weights.shape == (DIM, len(head.classes)) and "photos" in head.classes
    m = head.metrics
    assert m["train_images"] + m["val_images"] == EmbeddingStore(headed_index).read_manifest()["count"]
    assert 0 <= m["validation"]["accuracy"] <= 1 and "macro_f1" in m["validation"]
    assert len(head.val_ids) == m["val_images"]
    meta = json.loads((headed_index / "heads" / "cat" / "head.json").read_text())
    assert meta["classes"] == head.classes


def test_classify_image_engine(cnn_headed_index, corpus):
    engine = SearchEngine.open(cnn_headed_index)
    preds = engine.classify(corpus / "photos" / "coffee.jpg", "cat", top=3)
    assert len(preds) == 3 and preds[0][0] == "photos"  # a photo among emoji
    assert preds[0][1] >= preds[1][1] >= preds[2][1]
    flag = sorted((corpus / "emoji" / "Flags").glob("*.png"))[0]
    assert engine.classify(flag, "cat", top=1)[0][0] == "emoji/Flags"
    probs = [p for _, p in engine.classify(flag, "cat", top=100)]
    assert abs(sum(probs) - 1) < 1e-4


def test_head_for_another_backbone_is_refused(headed_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(headed_index, copy)
    meta_path = copy / "heads" / "cat" / "head.json"
    meta = json.loads(meta_path.read_text())
    meta["backbone"] = "efficientnet-lite2"  # as if trained on a lite2 index and copied here
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(HeadError, match="trained on efficientnet-lite2 embeddings.*retrain it here"):
        load_head(copy, "cat")
    with pytest.raises(HeadError, match="trained on efficientnet-lite2"):
        SearchEngine.open(copy).classify_id(0, "cat")
    with pytest.raises(HeadError, match="no head named 'dog'.*available: cat"):
        load_head(copy, "dog")


def test_labels_from_csv(cnn_index, tmp_path, corpus):
    copy = tmp_path / "idx"
    shutil.copytree(cnn_index[0], copy)
    table = EmbeddingStore(copy).read_table(EmbeddingStore(copy).read_manifest()["shards"], ["path"])
    paths = table.column("path").to_pylist()
    csv = tmp_path / "labels.csv"
    # relabel: photos vs emoji, paths relative to the CSV's folder
    import os

    lines = ["path,label"] + [f"{os.path.relpath(p, tmp_path)},{'photo' if '/photos/' in p else 'emoji'}"
                              for p in paths]
    csv.write_text("\n".join(lines) + "\n")
    head = train_head(copy, "kind", labels_csv=csv, config=HeadTrainingConfig(max_epochs=15, patience=3))
    assert head.classes == ["emoji", "photo"] and head.labels_source.startswith("csv")
    assert head.metrics["train_images"] + head.metrics["val_images"] == len(paths)
    engine = SearchEngine.open(copy)
    assert engine.classify(corpus / "photos" / "coffee.jpg", "kind", top=1)[0][0] == "photo"
    flag = sorted((corpus / "emoji" / "Flags").glob("*.png"))[0]
    assert engine.classify(flag, "kind", top=1)[0][0] == "emoji"
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx.png,a\n")
    with pytest.raises(HeadError, match="columns 'path' and 'label'"):
        train_head(copy, "bad", labels_csv=bad)
    with pytest.raises(HeadError, match="head name"):
        train_head(copy, "../escape")


def test_stratified_split_keeps_every_class():
    y = np.array([0] * 10 + [1] * 10 + [2] * 4)
    keep, held = stratified_split(y, 0.25, seed=1)
    assert len(held) == 6 and set(y[held]) == {0, 1, 2} and set(y[keep]) == {0, 1, 2}
    assert not set(keep) & set(held)


@pytest.mark.slow
def test_cli_train_classify_search_with_head(cnn_index, corpus, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(cnn_index[0], copy)
    runner = CliRunner()
    r = runner.invoke(main, ["train-head", "--index", str(copy), "--name", "cat"])
    assert r.exit_code == 0, r.output
    assert "validation accuracy" in r.output and "kNN-vote baseline" in r.output and "worst classes" in r.output
    coffee = str(corpus / "photos" / "coffee.jpg")
    r = runner.invoke(main, ["classify", "--index", str(copy), "--head", "cat", coffee, "--json", "--top", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["predictions"][0]["class"] == "photos" and len(out["predictions"]) == 2
    r = runner.invoke(main, ["search", "--index", str(copy), "--head", "cat", coffee, "-k", "3", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["results"][0]["path"] == coffee
    r = runner.invoke(main, ["search", "--index", str(copy), "--head", "nope", coffee])
    assert r.exit_code == 1 and "no head named 'nope'" in r.output
    r = runner.invoke(main, ["info", "--index", str(copy)])
    assert "heads:      cat" in r.output


def test_head_aware_search_changes_ranking_toward_the_class(cnn_headed_index, corpus):
    engine = SearchEngine.open(cnn_headed_index)
    flag = sorted((corpus / "emoji" / "Flags").glob("*.png"))[0]
    plain = engine.search_image(flag, k=6)
    aware = engine.search_image(flag, k=6, head="cat")
    assert aware[0].path == plain[0].path == str(flag)
    assert sum(h.label == "emoji/Flags" for h in aware) >= sum(h.label == "emoji/Flags" for h in plain)
    assert [h.id for h in engine.search_id(plain[0].id, k=5, head="cat")] != []


def test_whitening_on_and_off(headed_index, tmp_path, corpus):
    from imgsearch.indexer.run.whiten import set_whitening

    copy = tmp_path / "idx"
    shutil.copytree(headed_index, copy)
    before = SearchEngine.open(copy).search_image(corpus / "photos" / "rocket.jpg", k=5)
    manifest = set_whitening(copy, dim=16)
    assert manifest["whitening"]["dim"] == 16 and manifest["search_dim"] == 16
    engine = SearchEngine.open(copy)
    assert engine.index.d == 16
    hits = engine.search_image(corpus / "photos" / "rocket.jpg", k=5)
    assert hits[0].path == before[0].path and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.id for h in hits] != [h.id for h in before]  # the space changed
    assert engine.search_id(hits[0].id, k=3, head="cat")  # head index rebuilt for the new space
    kept = manifest["whitening"]["file"]
    manifest = set_whitening(copy, off=True)
    assert "whitening" not in manifest
    assert [p.name for p in copy.glob("whitening-*.npz")] == [kept]  # the previous version may still be served
    set_whitening(copy, off=True)  # one version later nobody can need it
    assert not list(copy.glob("whitening-*.npz"))
    again = SearchEngine.open(copy).search_image(corpus / "photos" / "rocket.jpg", k=5)
    assert [h.id for h in again] == [h.id for h in before]


def test_api_and_client_classify(cnn_headed_server, cnn_headed_index, corpus):
    client = SearchClient(cnn_headed_server.url, timeout=30)
    assert client.info()["heads"] == ["cat"]
    coffee = corpus / "photos" / "coffee.jpg"
    res = client.classify(coffee, top=3)  # the only head is the default
    assert res.head == "cat" and len(res) == 3 and res[0].label == "photos"
    engine = SearchEngine.open(cnn_headed_index)
    expected = engine.classify(coffee, "cat", top=3)
    assert [(p.label, round(p.probability, 4)) for p in res] == [(c, round(p, 4)) for c, p in expected]
    assert client.classify_id(0, "cat", top=1)[0].label == engine.classify_id(0, "cat", top=1)[0][0]
    aware = client.search(coffee, k=5, head="cat")
    assert [h.id for h in aware] == [h.id for h in engine.search_image(coffee, k=5, head="cat")]
    for body, code in [({"id": 0, "head": "dog"}, "unknown_head"), ({"id": 0, "head": 5}, "unknown_head"),
                       ({"id": 0, "top": 0}, "invalid_top"), ({"id": 10 ** 6}, "not_found")]:
        r = requests.post(cnn_headed_server.url + "/api/classify", json=body, timeout=10)
        assert r.status_code in (400, 404) and r.json()["error"]["code"] == code, (body, r.text)
    with pytest.raises(SearchAPIError) as info:
        client.classify(b"not an image")
    assert info.value.code == "invalid_image"


def test_cli_evaluate_writes_report(headed_index, tmp_path):
    out = tmp_path / "report"
    r = CliRunner().invoke(main, ["evaluate", "--index", str(headed_index), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "precision@10" in r.output and "head cat: accuracy" in r.output
    assert (out / "index.html").is_file() and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["heads"]["cat"]["validation"]["accuracy"] >= 0
    assert len(list(out.glob("*.png"))) == 3
