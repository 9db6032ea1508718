"""Damaged index folders: every command reports the damage in one message naming the file and
what to run, with a non-zero exit and no traceback; verify reports it as damage (exit 1); a
server starts without a damaged head and answers for it with a 409, not a 500."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import fake_model_env
from tests.pixel_model import NAME

EXE = Path(sys.executable).parent / "imgsearch"


def run(*args, timeout=300) -> subprocess.CompletedProcess:
    """The real console script: what a user sees on the terminal (knowing the tests' fake model)."""
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=fake_model_env())


def cli(*args) -> subprocess.CompletedProcess:
    """The same command in this process (no interpreter start-up); a traceback shows as an uncaught exception."""
    from click.testing import CliRunner

    from imgsearch.web.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test fails with it
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def damage_manifest(index_dir: Path, how: str) -> None:
    path = index_dir / "manifest.json"
    data = path.read_bytes()
    manifest = json.loads(data)
    changes = {
        "truncated": lambda: data[: len(data) // 2],
        "not utf-8": lambda: b"\xff\xfe" + data[2:],
        "not an object": lambda: b"[1, 2, 3]",
        "ann is a string": lambda: json.dumps(dict(manifest, ann="IVF")).encode(),
        "files is a list": lambda: json.dumps(dict(manifest, files=["shards/part-00000.parquet"])).encode(),
        "backbone missing": lambda: json.dumps({k: v for k, v in manifest.items() if k != "backbone"}).encode(),
        "shard outside the folder": lambda: json.dumps(dict(manifest, shards=["../../etc/passwd"])).encode(),
        "count negative": lambda: json.dumps(dict(manifest, count=-1)).encode(),
        "dim a string": lambda: json.dumps(dict(manifest, dim="1280")).encode(),
        "empty": lambda: b"",
    }
    path.write_bytes(changes[how]())


MANIFEST_DAMAGE = ["truncated", "not utf-8", "not an object", "ann is a string", "files is a list",
                   "backbone missing", "shard outside the folder", "count negative", "dim a string", "empty"]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, emoji_dir):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.run.heads import train_head
    from imgsearch.indexer.run.pipeline import index_images

    index_dir = tmp_path_factory.mktemp("damaged") / "idx"
    index_images([emoji_dir], index_dir, IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    short = HeadTrainingConfig(model="svm")  # an SVM head (no Keras): the heads' files are damaged, not judged
    train_head(index_dir, "cat", config=short)
    train_head(index_dir, "kind", config=short)
    return index_dir


@pytest.fixture
def copy(small_index, tmp_path):
    dest = tmp_path / "idx"
    shutil.copytree(small_index, dest)
    return dest


def assert_reported(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in result.stderr + result.stdout, (w, result.stderr)


def check_manifest_damage_reported(command, copy, emoji_dir) -> None:
    query = next(emoji_dir.rglob("*.png"))
    assert_reported(command("info", "--index", copy), "manifest.json")
    assert_reported(command("search", "--index", copy, query), "manifest.json")
    assert_reported(command("index", emoji_dir, "--index", copy, "--no-progress"), "manifest.json")
    assert_reported(command("serve", "--index", copy, "--port", "0"), "manifest.json")
    verify = command("verify", "--index", copy)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr, verify.stderr
    assert "DAMAGED" in verify.stdout + verify.stderr and "manifest.json" in verify.stdout + verify.stderr


@pytest.mark.parametrize("how", MANIFEST_DAMAGE)
def test_a_damaged_manifest_is_reported_by_every_command(copy, emoji_dir, how):
    damage_manifest(copy, how)
    check_manifest_damage_reported(cli, copy, emoji_dir)


def test_the_console_prints_manifest_damage_without_a_traceback(copy, emoji_dir):
    damage_manifest(copy, "truncated")
    check_manifest_damage_reported(run, copy, emoji_dir)


def test_the_manifest_check_names_the_field(copy):
    from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError

    damage_manifest(copy, "ann is a string")
    with pytest.raises(IndexFormatError, match=r"'ann' must be an object, got a string"):
        EmbeddingStore(copy).read_manifest()


def damage_head(index_dir: Path, how: str) -> None:
    folder = index_dir / "heads" / "cat"
    if how == "npz truncated":
        data = (folder / "head.npz").read_bytes()
        (folder / "head.npz").write_bytes(data[: len(data) // 3])
    elif how == "json garbage":
        (folder / "head.json").write_text("{not json")
    elif how == "json wrong types":
        meta = json.loads((folder / "head.json").read_text())
        (folder / "head.json").write_text(json.dumps(dict(meta, classes="abc", dim="x")))
    elif how == "faiss file gone":
        for f in folder.glob("search-*.faiss"):
            f.unlink()
    elif how == "faiss file garbage":
        for f in folder.glob("search-*.faiss"):
            f.write_bytes(b"garbage" * 100)


HEAD_DAMAGE = ["npz truncated", "json garbage", "json wrong types", "faiss file gone", "faiss file garbage"]


# the case run through the real console starts five processes: 5 s of CPU or more (tests/cpu_report.py)
@pytest.mark.parametrize("how", [pytest.param(HEAD_DAMAGE[0], marks=pytest.mark.slow), *HEAD_DAMAGE[1:]])
def test_a_damaged_head_is_reported_and_the_others_keep_working(copy, emoji_dir, how):
    damage_head(copy, how)
    query = next(emoji_dir.rglob("*.png"))
    command = run if how == "npz truncated" else cli  # one through the real console
    assert_reported(command("search", "--index", copy, "--head", "cat", query), "cat", "train-head")
    assert_reported(command("classify", "--index", copy, "--head", "cat", query), "cat", "train-head")
    verify = command("verify", "--index", copy)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr and "heads/cat" in verify.stdout + verify.stderr
    ok = command("classify", "--index", copy, "--head", "kind", query)  # the other head is intact
    assert ok.returncode == 0, ok.stderr
    plain = command("search", "--index", copy, query)
    assert plain.returncode == 0, plain.stderr


@pytest.mark.parametrize("how", HEAD_DAMAGE)
def test_a_server_starts_without_a_damaged_head_and_answers_409_for_it(copy, how):
    from imgsearch.search.engine import SearchEngine
    from tests.helpers import LiveServer
    from imgsearch.web import create_app

    damage_head(copy, how)
    engine = SearchEngine.open(copy)
    lazy = how == "faiss file garbage"  # a garbled index file is found when it is first read
    assert engine.head_names() == (["cat", "kind"] if lazy else ["kind"])
    server = LiveServer(create_app({"INDEX_DIR": str(copy), "RELOAD_INTERVAL": None}))
    try:
        import requests

        info = requests.get(server.url + "/api/info", timeout=30).json()
        assert "kind" in info["heads"]
        r = requests.post(server.url + "/api/classify", json={"id": 0, "head": "cat"}, timeout=30)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "head_damaged" and "train-head" in r.json()["error"]["message"]
        r = requests.post(server.url + "/api/search", json={"id": 0, "head": "cat"}, timeout=30)
        assert r.status_code == 409, r.text
        r = requests.post(server.url + "/api/classify", json={"id": 0, "head": "kind"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        server.close()
