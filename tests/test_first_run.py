"""The first run, as a user sees it (issue 32): imgsearch's own lines on the terminal and nothing else.

A cold ``imgsearch index`` (empty model cache: the model is built and converted) writes one line saying that a
model is being prepared, its progress and its summary; TensorFlow, absl, XLA and the TFLite runtime's lines
(``cuInit`` errors, ``TensorSpec`` dumps, "Saved artifact at", quantisation warnings, "Created TensorFlow Lite
XNNPACK delegate") go to the cache's ``models/libraries.log`` instead, and are shown with ``--verbose``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "imgsearch"

# what imgsearch writes on stderr: a step's line, a progress bar, its log format, an error
OWN = re.compile(r"^(preparing \S+.* for this CPU.*, once: about \d+ s\b|indexing: |Error: |"
                 r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) imgsearch[\w.]*: )")


def foreign(text: str) -> list[str]:
    """The lines of ``text`` that imgsearch did not write (a progress bar's carriage returns split lines)."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip() and not OWN.match(line)]


def imgsearch(*args, cache: Path, verbose: bool = False):
    env = dict(os.environ, IMGSEARCH_CACHE=str(cache))
    for name in ("TF_CPP_MIN_LOG_LEVEL", "IMGSEARCH_VERBOSE"):
        env.pop(name, None)  # as a user's shell has it
    started = time.perf_counter()
    run = subprocess.run([str(EXE), *(["--verbose"] if verbose else []), *map(str, args)], capture_output=True,
                         text=True, timeout=600, env=env)
    return run, time.perf_counter() - started


def test_only_imgsearch_lines_pass_the_filter():
    assert foreign("preparing efficientnet-lite0 for this CPU (int8 TFLite), once: about 40 s; cached in /c ...\n"
                   "indexing: 100%|###| 8/8\rindexing: 100%\nWARNING imgsearch.indexer.run: x\nError: y\n") == []
    for line in ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "  warnings.warn(",
                 "E0000 00:00:1796551779.632105   19751 cuda_platform.cc:52] failed call to cuInit",
                 "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                 "Saved artifact at '/tmp/x'. The following endpoints are available:"):
        assert foreign(line) == [line]


@pytest.fixture(scope="module")
def cold(tmp_path_factory, photos_dir):
    """A cold first run: an empty model cache, the real model, a few photos."""
    root = tmp_path_factory.mktemp("first-run")
    shutil.copytree(photos_dir, root / "photos")
    run, seconds = imgsearch("index", root / "photos", "--index", root / "idx", cache=root / "cache")
    print(f"cold imgsearch index of 8 photos: {seconds:.1f} s")
    return root, run, seconds


@pytest.mark.slow
@pytest.mark.skipif(not EXE.exists(), reason="console script not installed (pip install -e .)")
def test_cold_index_writes_only_its_own_lines(cold):
    root, run, seconds = cold
    assert run.returncode == 0, run.stderr
    assert foreign(run.stderr) == [], run.stderr
    assert run.stdout.splitlines() == [line for line in run.stdout.splitlines() if line.startswith("indexed ")]
    assert len(run.stdout.splitlines()) == 1 and "indexed 8 new images" in run.stdout, run.stdout
    # one line says what the wait is, before it
    said = re.findall(r"^preparing efficientnet-lite0 for this CPU[^\n]*, once: about \d+ s", run.stderr, re.M)
    assert len(said) == 1, run.stderr
    # the precision it chose, and why: from this CPU's flags or measured on it
    backbone = json.loads((root / "idx" / "manifest.json").read_text())["backbone"]
    print(f"a new index on this CPU: {backbone['precision_reason']}")
    assert backbone["precision_reason"].startswith(f"{backbone['precision']}: ")
    assert "this CPU" in backbone["precision_reason"]
    # what the libraries said is kept, not lost
    assert "TensorSpec" in (root / "cache" / "models" / "libraries.log").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not EXE.exists(), reason="console script not installed (pip install -e .)")
def test_warm_search_writes_only_its_own_lines(cold):
    root, _, _ = cold
    run, _ = imgsearch("search", "--index", root / "idx", "--json", "-k", "2", root / "photos" / "coffee.jpg",
                       cache=root / "cache")
    assert run.returncode == 0, run.stderr
    assert foreign(run.stderr) == [], run.stderr  # no "Created TensorFlow Lite XNNPACK delegate for CPU."
    assert json.loads(run.stdout)["results"][0]["path"].endswith("coffee.jpg")


@pytest.mark.slow
@pytest.mark.skipif(not EXE.exists(), reason="console script not installed (pip install -e .)")
def test_first_explain_writes_only_its_own_lines(cold):
    root, _, _ = cold
    run, seconds = imgsearch("explain", "--index", root / "idx", root / "photos" / "coffee.jpg", "0",
                             cache=root / "cache")
    print(f"first imgsearch explain (explaining model converted): {seconds:.1f} s")
    assert run.returncode == 0, run.stderr
    assert foreign(run.stderr) == [], run.stderr
    assert re.search(r"^preparing efficientnet-lite0, its explaining model,", run.stderr, re.M), run.stderr
    assert [line for line in run.stdout.splitlines() if "score" not in line] == [], run.stdout


@pytest.mark.slow
@pytest.mark.skipif(not EXE.exists(), reason="console script not installed (pip install -e .)")
def test_verbose_shows_what_the_libraries_say(cold):
    root, _, _ = cold
    run, _ = imgsearch("search", "--index", root / "idx", "--json", root / "photos" / "coffee.jpg",
                       cache=root / "cache", verbose=True)
    assert run.returncode == 0, run.stderr
    assert "XNNPACK" in run.stderr
