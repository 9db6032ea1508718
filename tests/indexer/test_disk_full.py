"""A full disk: a writing command says so in one line, leaves no temporary file, the published version
stays served and intact, and once there is space again the next run completes.

The disk is real: a small tmpfs mounted for the test (needs root; skipped otherwise), filled with a file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.indexer.atomic import DiskFullError, atomic_path
from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from tests.helpers import fake_model_env, rng_image
from tests.pixel_model import NAME

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
ENV = fake_model_env()  # the children open the index built with the tests' fake model
PAGE = 4096


@pytest.fixture
def disk(tmp_path):
    """A 2 MB tmpfs: a disk that fills up for real."""
    mount = tmp_path / "disk"
    mount.mkdir()
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {run.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the disk holding ``folder`` until at most ``leave`` bytes are free; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "ab") as f:
        try:
            while free_bytes(folder) > leave:
                f.write(b"\0" * min(free_bytes(folder) - leave, 1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def temp_files(index_dir: Path) -> list[str]:
    return [str(p) for p in index_dir.rglob(".*.tmp*")]


def imgsearch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IMGSEARCH, *args], env=ENV, capture_output=True, text=True, timeout=180)


@pytest.fixture
def small_index(disk, tmp_path) -> tuple[Path, Path, Path]:
    """An index of three images on the small disk, and three more images to add (on another disk)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seeds in ((a, range(3)), (b, range(10, 13))):
        folder.mkdir()
        for seed in seeds:
            rng_image(seed).save(folder / f"{folder.name}{seed}.png")
    index_dir = disk / "idx"
    index_images([a], index_dir, IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    return index_dir, a, b


@pytest.mark.slow  # 5 s of CPU or more with its child processes (tests/cpu_report.py)
def test_writers_on_a_full_disk_fail_in_one_line_and_the_next_run_recovers(small_index):
    index_dir, a, b = small_index
    before = EmbeddingStore(index_dir).read_manifest()
    filler = fill(index_dir.parent)
    for args in (["index", str(b), "--index", str(index_dir), "--workers", "0", "--no-progress"],
                 ["remove", "--index", str(index_dir), str(a / "a0.png")],
                 ["build-index", "--index", str(index_dir)]):  # only the FAISS file and the manifest
        run = imgsearch(*args)
        lines = run.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("Error: ")]
        assert run.returncode == 1 and len(errors) == 1, (args, run.stderr)
        assert "Traceback" not in run.stderr and "close error" not in run.stderr, (args, run.stderr)
        assert str(index_dir) in errors[0] and "the disk is full" in errors[0], errors
        assert temp_files(index_dir) == [], args
        assert EmbeddingStore(index_dir).read_manifest()["generation"] == before["generation"]
    engine = SearchEngine.open(index_dir)  # the old version is still the one served
    assert engine.generation == before["generation"] and len(engine) == 3
    assert imgsearch("verify", "--index", str(index_dir)).returncode == 0

    filler.unlink()
    run = imgsearch("index", str(b), "--index", str(index_dir), "--workers", "0", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert len(SearchEngine.open(index_dir)) == 6
    assert imgsearch("verify", "--index", str(index_dir)).returncode == 0


def _ivf_index():
    import faiss

    rng = np.random.default_rng(0)
    quantizer = faiss.IndexFlatL2(16)
    index = faiss.IndexIVFFlat(quantizer, 16, 8)
    vectors = rng.random((2000, 16), dtype=np.float32)
    index.train(vectors)
    index.add(vectors[:1500])
    return index


def test_a_faiss_file_that_does_not_fit_is_an_error_not_a_truncated_file(disk):
    """FAISS's own writer drops the error of its last, buffered write: the file would look written."""
    import faiss

    index = _ivf_index()
    size = len(faiss.serialize_index(index))
    assert size % PAGE
    fill(disk, leave=(size // PAGE) * PAGE)  # room for all but the last part of the file
    store = EmbeddingStore(disk)
    with pytest.raises(DiskFullError, match="the disk is full") as raised:
        store.write_index(index, 1)
    assert str(disk) in str(raised.value) and raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_faiss_s_own_disk_full_error_is_mapped_too(disk):
    import faiss

    fill(disk)
    with pytest.raises(DiskFullError, match="the disk is full"):
        with atomic_path(disk / "x.faiss") as tmp:
            faiss.write_index(_ivf_index(), str(tmp))  # FAISS's RuntimeError, its text naming ENOSPC
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_the_disk_full_error_is_in_the_family():
    from imgsearch.indexer.errors import ExecutionError

    assert issubclass(DiskFullError, ExecutionError) and issubclass(DiskFullError, OSError)


def test_a_full_disk_while_logging_a_skipped_file_is_the_same_one_line_error(disk):
    store = EmbeddingStore(disk / "idx")
    store.log_skipped(["/photos/a.jpg\tnot an image"])  # the log exists, then the disk fills
    fill(disk)
    with pytest.raises(DiskFullError, match=r"skipped\.log: the disk is full"):
        store.log_skipped(["/photos/b.jpg\tnot an image" * 2000])
