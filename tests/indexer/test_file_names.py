"""File names of any bytes: indexed, stored losslessly, found again, shown as valid UTF-8.

Linux allows any bytes but NUL and "/" in a name; Python gives a name that is
not UTF-8 as a str with lone surrogates (``os.fsdecode``).  A corpus with such
names (a file, a label folder, a broken file) plus ordinary ones goes through
the real ``imgsearch`` commands, the Python API, a real server and Spark.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import example, given
from hypothesis import strategies as st

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import (
    ESCAPE,
    decode_text,
    display_text,
    encode_text,
    os_bytes,
    texts_of,
)
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from tests.helpers import LiveServer, fake_model_env
from tests.pixel_model import NAME

EXE = Path(sys.executable).parent / "imgsearch"
CFG = IndexConfig(backbone=NAME, progress=False, decode_workers=0, shard_size=5)
COLUMNS = ["id", "path", "label", "width", "height", "sha256"]

CAFE = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
LABEL = os.fsdecode(b"\xff\xfe")  # a label folder that is not UTF-8
BROKEN = os.fsdecode(b"broken\xe9.jpg")  # not an image: skipped, with a name that is not UTF-8 either


def valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ------------------------------------------------------------------ the codec
@given(st.binary(max_size=64))
@example(b"\x00")
@example(b"%")
@example(b"%25%E9")
@example(b"\x00caf%E9.png")
@example(b"caf\xe9.png")
def test_every_byte_string_round_trips(name):
    text = name.decode("utf-8", "surrogateescape")  # what os.fsdecode gives on Linux
    stored = encode_text(text)
    assert valid_utf8(stored)  # a Parquet string can hold it
    assert decode_text(stored) == text and os_bytes(decode_text(stored)) == name
    assert valid_utf8(display_text(text))


@given(st.text(max_size=40))
@example(ESCAPE)
@example(ESCAPE + "%41")
@example("100%.png")
def test_valid_texts_are_stored_as_themselves_unless_they_start_with_the_escape(text):
    stored = encode_text(text)
    assert decode_text(stored) == text and valid_utf8(stored)
    assert (stored == text) != text.startswith(ESCAPE)  # old folders' texts read unchanged
    assert display_text(text) == text


def test_display_shows_the_undecodable_bytes():
    assert display_text(CAFE) == "caf\\xe9.png"
    assert display_text("\ud800") == "\\ud800"  # no bytes decode to it: still printable


# ------------------------------------------------------------------ a corpus with such names
@pytest.fixture(scope="module")
def corpus(tmp_path_factory, emoji_dir) -> Path:
    """16 images (5 named with bytes that are not UTF-8, 6 in a non-UTF-8 label folder) and 1 broken file."""
    pngs = sorted(emoji_dir.rglob("*.png"))
    root = tmp_path_factory.mktemp("names")
    (root / LABEL).mkdir()
    (root / "plain").mkdir()
    names = [CAFE, "100% %41 real.png", "日本.png", "new\nline.png",
             *(f"{LABEL}/{n}" for n in (os.fsdecode(b"a\xff.png"), "b.png", "c.png", "d.png", "e.png", "f.png")),
             *(f"plain/{i}.png" for i in range(6))]
    for name, png in zip(names, pngs):
        shutil.copy(png, root / name)
    (root / BROKEN).write_bytes(b"not an image")
    return root


def on_disk(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".png")}


def imgsearch(*args) -> subprocess.CompletedProcess:
    run = subprocess.run([str(EXE), *map(str, args)], capture_output=True, timeout=300, env=fake_model_env())
    # what a command prints is UTF-8 whatever the names hold
    run.text = run.stdout.decode("utf-8") + run.stderr.decode("utf-8")
    return run


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, corpus) -> Path:
    index_dir = tmp_path_factory.mktemp("cli") / "idx"
    first = imgsearch("index", corpus, "--index", index_dir, "--no-progress", "--backbone", NAME)
    assert first.returncode == 0, first.text
    assert "indexed 16 new images" in first.text and "1 skipped" in first.text
    assert "broken\\xe9.jpg: not an image Pillow recognises" in first.text
    return index_dir


def test_cli_indexes_every_image_and_a_rerun_adds_none(cli_index, corpus):
    again = imgsearch("index", corpus, "--index", cli_index, "--no-progress", "--sync")
    assert again.returncode == 0 and "indexed 0 new images" in again.text, again.text
    assert "16 already indexed, 0 changed, 0 removed" in again.text  # the stored paths are the listed ones
    store = EmbeddingStore(cli_index)
    table = store.read_table(store.read_manifest()["shards"])
    assert set(texts_of(table, "path")) == on_disk(corpus)  # the names on disk, byte for byte
    assert set(texts_of(table, "label")) == {"", LABEL, "plain"}
    # skipped.log names the broken file by its bytes on disk
    log = (cli_index / "skipped.log").read_bytes()
    assert os.fsencode(str(corpus / BROKEN)) + b"\tnot an image Pillow recognises" in log


def test_search_returns_the_real_paths(cli_index, corpus):
    engine = SearchEngine.open(cli_index)
    paths = {engine.get(i).path: i for i in engine.ids.tolist()}
    cafe = paths[str(corpus / CAFE)]
    hits = engine.search_id(cafe, k=15)
    assert {h.path for h in hits} == on_disk(corpus) - {str(corpus / CAFE)}
    assert all(os.path.exists(h.path) for h in hits)
    assert engine.get(paths[str(corpus / LABEL / os.fsdecode(b"a\xff.png"))]).label == LABEL
    assert engine.thumbnail(cafe, 32)[:2] == b"\xff\xd8"  # read through the real path


def test_search_command_prints_valid_utf8(cli_index, corpus):
    run = imgsearch("search", corpus / CAFE, "--index", cli_index, "-k", "16", "--json")
    assert run.returncode == 0, run.text
    reply = json.loads(run.stdout.decode("utf-8"))
    assert reply["query"] == f"{corpus}/caf\\xe9.png"
    shown = {r["path"] for r in reply["results"]}
    assert f"{corpus}/caf\\xe9.png" in shown and f"{corpus}/\\xff\\xfe/a\\xff.png" in shown
    assert all(valid_utf8(r["path"]) and valid_utf8(r["label"]) for r in reply["results"])
    plain = imgsearch("search", corpus / CAFE, "--index", cli_index, "-k", "3")
    assert plain.returncode == 0 and "caf\\xe9.png" in plain.text


def test_api_replies_valid_json_with_displayable_paths(cli_index, corpus):
    from imgsearch.web import create_app

    engine = SearchEngine.open(cli_index)
    cafe = next(i for i in engine.ids.tolist() if engine.get(i).path == str(corpus / CAFE))
    server = LiveServer(create_app({"INDEX_DIR": str(cli_index)}))
    try:
        reply = requests.post(f"{server.url}/api/search", json={"id": cafe, "k": 15}, timeout=30)
        assert reply.status_code == 200
        results = json.loads(reply.content.decode("utf-8"))["results"]
        assert len(results) == 15 and all(valid_utf8(r["path"]) and valid_utf8(r["label"]) for r in results)
        labelled = next(r for r in results if r["path"].endswith("a\\xff.png"))
        assert labelled["label"] == "\\xff\\xfe"
        thumb = requests.get(server.url + labelled["thumbnail_url"], timeout=30)
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    finally:
        server.close()


def test_remove_by_such_a_path_then_verify(cli_index, corpus, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(cli_index, index_dir)
    run = imgsearch("remove", corpus / CAFE, "--index", index_dir)
    assert run.returncode == 0 and "removed 1 images; 15 left" in run.text, run.text
    store = EmbeddingStore(index_dir)
    paths = texts_of(store.read_table(store.read_manifest()["shards"], ["path"]), "path")
    assert set(paths) == on_disk(corpus) - {str(corpus / CAFE)}
    verify = imgsearch("verify", "--index", index_dir)
    assert verify.returncode == 0, verify.text


def test_heads_train_on_such_labels_and_a_labels_csv_names_such_paths(cli_index, corpus, tmp_path):
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.run.heads import read_labels_csv, train_head

    index_dir = tmp_path / "idx"
    shutil.copytree(cli_index, index_dir)
    head = train_head(index_dir, "folders", config=HeadTrainingConfig(model="svm"))  # its names matter (SVM: no Keras)
    assert head.classes == ["\\xff\\xfe", "plain"]  # class names are shown, so they are display texts
    csv = tmp_path / "labels.csv"
    csv.write_bytes(b"path,label\n" + os.fsencode(str(corpus / CAFE)) + b",cafe\n")
    paths = texts_of(EmbeddingStore(index_dir).read_table(EmbeddingStore(index_dir).read_manifest()["shards"],
                                                           ["path"]), "path")
    assert read_labels_csv(csv, paths) == {str(corpus / CAFE): "cafe"}


@pytest.fixture(scope="module")
def api_index(tmp_path_factory, corpus) -> Path:
    index_dir = tmp_path_factory.mktemp("api") / "idx"
    summary = index_images([corpus], index_dir, CFG)
    assert (summary.added, len(summary.skipped)) == (16, 1)
    assert summary.skipped[0][0] == str(corpus / BROKEN)
    assert all(valid_utf8(line) for line in summary.lines())
    assert index_images([corpus], index_dir, CFG).added == 0
    return index_dir


def rows_of(index_dir) -> dict:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], COLUMNS)
    return {c: texts_of(table, c) if c in ("path", "label") else table.column(c).to_pylist() for c in COLUMNS}


def test_python_api_gives_the_command_line_index(api_index, cli_index):
    assert rows_of(api_index) == rows_of(cli_index)


def test_spark_gives_the_local_rows(api_index, corpus, tmp_path, spark):
    from imgsearch.indexer.spark.images import index_images_spark

    cfg = IndexConfig(progress=False, shard_size=5, spark_master="local[2]", spark_task_size=4)
    summary = index_images_spark([corpus], tmp_path / "idx", cfg, spark=spark)
    assert (summary.added, summary.skipped) == (16, [(str(corpus / BROKEN), "not an image Pillow recognises")])
    assert rows_of(tmp_path / "idx") == rows_of(api_index)


def test_evaluate_reports_such_labels(cli_index, tmp_path):
    run = imgsearch("evaluate", "--index", cli_index, "--out", tmp_path / "report")
    assert run.returncode == 0 and "retrieval (leave-one-out, 12 images, 2 labels)" in run.text, run.text
    report = json.loads((tmp_path / "report" / "report.json").read_bytes().decode("utf-8"))
    assert set(report["retrieval"]["per_label"]) == {"\\xff\\xfe", "plain"}
    assert "\\xff\\xfe" in (tmp_path / "report" / "index.html").read_bytes().decode("utf-8")
