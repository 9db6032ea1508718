"""The installed console script, run as a user runs it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "imgsearch"


@pytest.mark.slow
@pytest.mark.skipif(not EXE.exists(), reason="console script not installed (pip install -e .)")
def test_index_then_search_from_the_shell(tmp_path, photos_dir, corpus):
    src = tmp_path / "pics"
    shutil.copytree(photos_dir, src / "photos")
    shutil.copytree(corpus / "bad", src / "bad")
    run = subprocess.run([str(EXE), "index", str(src), "--index", str(tmp_path / "idx"), "--batch-size", "4"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "indexed 8 new images" in run.stdout and "3 skipped" in run.stdout
    assert "notes.jpg: not an image" in run.stdout
    assert "img/s" in run.stderr  # the progress bar
    run = subprocess.run([str(EXE), "search", "--index", str(tmp_path / "idx"), "--json", "-k", "2",
                          str(src / "photos" / "coffee.jpg")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["results"][0]["path"].endswith("coffee.jpg") and len(out["results"]) == 2
