"""An index folder written by the previous release opens, searches, classifies and takes an
incremental ``imgsearch index`` with this code, giving the answers that release gave.

``tests/data/v0-index`` was made once by ``scripts/make_compat_fixture.py`` at a5e8f0e: 36
digit images (``images/``) indexed into ``index/`` (2 shards) with a head 'digit', 12 more
(``more/``) for the incremental run, and that release's answers in ``expected.json``.  Only
public names are used: ``SearchEngine`` and the ``imgsearch`` command line.

The shards hold absolute paths, of the folder the fixture was made in (``generated_root``).
The tests work on a copy at TMP/v0-index; expected.json writes a path as "{generated}/..."
(a path the shards hold from then) or "{root}/..." (under the copy an incremental run indexed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.search.engine import SearchEngine
from tests.helpers import ROOT, V0_INDEX, copy_v0_index

REPO = ROOT
FIXTURE = V0_INDEX
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
K, HEAD = EXPECTED["k"], EXPECTED["head"]
ATOL = 1e-5
SUMMARY = re.compile(r"indexed (\d+) new images in .*?; (\d+) already indexed, (\d+) changed, (\d+) removed, "
                     r"(\d+) duplicates, (\d+) skipped; (\d+) images in ")


def imgsearch(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    """The ``imgsearch`` console script of this checkout, run as a user runs it.

    Started from the entry point this checkout's pyproject.toml declares, with this checkout
    first on PYTHONPATH: a venv's ``bin/imgsearch`` runs whatever its editable install points
    at, which need not be the code the rest of this test imports.
    """
    entry = re.search(r'^imgsearch\s*=\s*"([\w.]+):(\w+)"', (REPO / "pyproject.toml").read_text(), re.M)
    module, func = entry.groups()
    code = f"import sys; from {module} import {func}; sys.argv[0] = 'imgsearch'; sys.exit({func}())"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def expand(path: str, root: Path) -> str:
    """A path as expected.json writes it -> the absolute path the index should report."""
    marker, rel = path.split("/", 1)
    base = {"{generated}": EXPECTED["generated_root"], "{root}": str(root)}[marker]
    return os.path.join(base, *rel.split("/"))


def check_hits(found, expected: list[dict], root: Path, what: str) -> None:
    assert len(found) == len(expected) == K, what
    assert [h.id for h in found] == [e["id"] for e in expected], what
    assert [h.path for h in found] == [expand(e["path"], root) for e in expected], what
    assert [h.label for h in found] == [e["label"] for e in expected], what
    np.testing.assert_allclose([h.score for h in found], [e["score"] for e in expected], rtol=0, atol=ATOL,
                               err_msg=what)


def check_predictions(found, expected: list[dict], what: str) -> None:
    assert [c for c, _ in found] == [e["class"] for e in expected], what
    np.testing.assert_allclose([p for _, p in found], [e["probability"] for e in expected], rtol=0, atol=ATOL,
                               err_msg=what)


def check_queries(engine: SearchEngine, root: Path, expected: dict) -> None:
    """The recorded searches, head-aware searches and classifications, against ``expected``."""
    vector = np.asarray(EXPECTED["vector_query"], np.float32)
    for i, want in expected["by_id"].items():
        check_hits(engine.search_id(int(i), K), want, root, f"search_id({i})")
    for rel, want in expected["by_image"].items():
        check_hits(engine.search_image(root / rel, K), want, root, f"search_image({rel})")
    check_hits(engine.search_vector(vector, K), expected["by_vector"], root, "search_vector")
    for i, want in expected["head_by_id"].items():
        check_hits(engine.search_id(int(i), K, head=HEAD), want, root, f"search_id({i}, head)")
    for rel, want in expected["head_by_image"].items():
        check_hits(engine.search_image(root / rel, K, head=HEAD), want, root, f"search_image({rel}, head)")
    for rel, want in expected["classify"].items():
        check_predictions(engine.classify(root / rel, HEAD, top=len(want)), want, f"classify({rel})")


def check_rows(engine: SearchEngine, root: Path, expected: dict) -> None:
    assert sorted(engine.ids.tolist()) == sorted(map(int, expected))
    for i, want in expected.items():
        hit = engine.get(int(i))
        assert (hit.path, hit.label) == (expand(want["path"], root), want["label"]), i


def check_info(data: dict, expected: dict, root: Path) -> None:
    got = {"backbone": data["backbone"]["name"], "input_size": data["backbone"]["input_size"],
           **{k: data[k] for k in ("dim", "count", "shards", "metric", "index_type", "heads", "whitening",
                                   "generation")}}
    assert got == expected
    assert Path(data["index_dir"]) == root / "index"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A copy of the fixture that no test changes."""
    return copy_v0_index(tmp_path_factory.mktemp("compat"))


@pytest.fixture(scope="module")
def engine(root) -> SearchEngine:
    return SearchEngine.open(root / "index")


def test_fixture_was_made_by_the_previous_release():
    assert EXPECTED["commit"].startswith("a5e8f0e")
    assert EXPECTED["info"]["shards"] >= 2 and EXPECTED["info"]["heads"] == [HEAD]
    assert not any(".tmp" in p.name for p in FIXTURE.rglob("*"))  # a clean, fully published folder


def test_opens_with_the_same_rows_and_embeddings(engine, root):
    check_info(engine.info(), EXPECTED["info"], root)
    assert len(engine) == EXPECTED["info"]["count"] and engine.head_names() == [HEAD]
    check_rows(engine, root, EXPECTED["rows"])
    for i, want in EXPECTED["vectors"].items():
        v = engine.vector(int(i))
        assert v.shape == (EXPECTED["info"]["dim"],)
        np.testing.assert_allclose(v[:8], want["first"], rtol=0, atol=ATOL)
        assert float(np.linalg.norm(v)) == pytest.approx(want["norm"], abs=ATOL)


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
def test_searches_and_classifies_as_before(engine, root):
    check_queries(engine, root, EXPECTED)


def test_cli_info_and_verify(root):
    run = imgsearch("info", "--index", root / "index", "--json")
    assert run.returncode == 0, run.stderr
    check_info(json.loads(run.stdout), EXPECTED["info"], root)
    run = imgsearch("info", "--index", root / "index")
    assert run.returncode == 0, run.stderr
    assert f"images:     {EXPECTED['info']['count']} in {EXPECTED['info']['shards']} shard(s)" in run.stdout
    assert f"heads:      {HEAD}" in run.stdout
    run = imgsearch("verify", "--index", root / "index")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"OK: {root / 'index'}: {EXPECTED['info']['count']} images in "
                                 f"{EXPECTED['info']['shards']} shard(s), 1 head(s)")


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
def test_cli_search_and_classify(root):
    images = [root / rel for rel in EXPECTED["queries"]["images"]]
    for key, head in (("by_image", []), ("head_by_image", ["--head", HEAD])):
        run = imgsearch("search", "--index", root / "index", "--json", "-k", K, *head, *images)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert len(lines) == len(images)
        for image, line in zip(images, lines):
            out = json.loads(line)
            assert out["query"] == str(image)
            rel = image.relative_to(root).as_posix()
            assert [r["id"] for r in out["results"]] == [h["id"] for h in EXPECTED[key][rel]], (key, rel)
            assert [r["path"] for r in out["results"]] == [expand(h["path"], root) for h in EXPECTED[key][rel]]
            np.testing.assert_allclose([r["score"] for r in out["results"]],
                                       [h["score"] for h in EXPECTED[key][rel]], rtol=0, atol=ATOL)
    wanted = EXPECTED["classify"]
    run = imgsearch("classify", "--index", root / "index", "--head", HEAD, "--json", "--top", 3,
                    *(root / rel for rel in wanted))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == len(wanted)
    for (rel, want), line in zip(wanted.items(), lines):
        out = json.loads(line)
        assert out["image"] == str(root / rel) and out["head"] == HEAD
        check_predictions([(p["class"], p["probability"]) for p in out["predictions"]], want, rel)


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
def test_incremental_index_adds_the_new_batch_as_before(tmp_path):
    inc = EXPECTED["incremental"]
    root = copy_v0_index(tmp_path)
    args = [a.replace("{root}", str(root)) for a in inc["command"]]
    for key in ("summary", "rerun_summary"):  # the new batch is added; running again adds nothing
        run = imgsearch(*args)
        assert run.returncode == 0, run.stdout + run.stderr
        m = SUMMARY.search(run.stdout)
        assert m, run.stdout
        assert dict(zip(inc[key], map(int, m.groups()))) == inc[key], key
        assert run.stdout.rstrip().endswith(f"images in {root / 'index'}")

    engine = SearchEngine.open(root / "index")
    check_info(engine.info(), inc["info"], root)
    check_rows(engine, root, inc["rows"])
    assert sorted(set(engine.ids.tolist()) - set(map(int, EXPECTED["rows"]))) == inc["new_ids"]
    for i, want in inc["new_by_id"].items():
        check_hits(engine.search_id(int(i), K), want, root, f"search_id({i}) of a new image")
    check_queries(engine, root, inc)

    run = imgsearch("verify", "--index", root / "index")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"OK: {root / 'index'}: {inc['info']['count']} images in "
                                 f"{inc['info']['shards']} shard(s), 1 head(s)")
