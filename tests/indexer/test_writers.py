"""One writer per index folder: concurrent writing commands take turns, readers never wait.

Real ``imgsearch`` processes (the console script runs this tree through
PYTHONPATH), real lock holders in other processes, killed for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.lock import IndexLockedError, writer_lock
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.run.pipeline import index_images
from tests.helpers import fake_model_env, rng_image, wait_until
from tests.pixel_model import NAME

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
ENV = fake_model_env()  # the children index with the tests' fake model too
CFG = IndexConfig(backbone=NAME, progress=False, decode_workers=0)
TRIALS = 6  # two concurrent runs into a new index, each time


def _folder(root: Path, name: str, seeds: range) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for seed in seeds:
        rng_image(seed).save(folder / f"{name}{seed}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("writers")
    return _folder(root, "a", range(0, 3)), _folder(root, "b", range(10, 13))


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([IMGSEARCH, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _index_cmd(folder: Path, index_dir: Path, *extra: str) -> list[str]:
    return ["index", str(folder), "--index", str(index_dir), "--workers", "0", "--no-progress", "--backbone", NAME, *extra]


def _paths(index_dir: Path) -> set[str]:
    store = EmbeddingStore(index_dir)
    return set(store.read_table(store.read_manifest()["shards"], ["path"]).column("path").to_pylist())


def _images(*folders: Path) -> set[str]:
    return {str(p) for f in folders for p in f.glob("*.png")}


def _verify_ok(index_dir: Path) -> bool:
    run = subprocess.run([IMGSEARCH, "verify", "--index", str(index_dir)], env=ENV, capture_output=True,
                         text=True, timeout=120)
    return run.returncode == 0


@pytest.mark.slow  # TRIALS rounds of two real index processes racing: a measurement of the lock
def test_two_index_runs_into_one_new_index_keep_both(folders, tmp_path):
    a, b = folders
    lost = []
    for trial in range(TRIALS):
        index_dir = tmp_path / f"idx{trial}"
        runs = [_start(*_index_cmd(a, index_dir)), _start(*_index_cmd(b, index_dir))]
        results = [_finish(p) for p in runs]
        assert [rc for rc, _, _ in results] == [0, 0], results
        missing = _images(a, b) - _paths(index_dir)
        if missing or not _verify_ok(index_dir):
            lost.append((trial, sorted(Path(p).name for p in missing)))
    assert not lost, f"{len(lost)} of {TRIALS} trials lost images or failed verify: {lost}"


@pytest.mark.slow  # 5 s of CPU or more with its child processes (tests/cpu_report.py)
def test_index_and_remove_started_together_both_succeed(folders, tmp_path):
    a, b = folders
    for trial in range(3):
        index_dir = tmp_path / f"idx{trial}"
        index_images([a], index_dir, CFG)
        gone = str(sorted(a.glob("*.png"))[0])
        runs = [_start(*_index_cmd(b, index_dir)), _start("remove", "--index", str(index_dir), gone)]
        results = [_finish(p) for p in runs]
        assert [rc for rc, _, _ in results] == [0, 0], results
        assert _paths(index_dir) == _images(a, b) - {gone}
        assert _verify_ok(index_dir)


HOLDER = ("import sys\n"
          "from imgsearch.indexer.folder.lock import writer_lock\n"
          "with writer_lock(sys.argv[1], command='holder for the test'):\n"
          "    print('held', flush=True)\n"
          "    sys.stdin.readline()\n")


@pytest.fixture
def holder(tmp_path, folders):
    """An index folder and another process holding its writer lock until its stdin gets a line."""
    index_dir = tmp_path / "held"
    index_images([folders[0]], index_dir, CFG)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(index_dir)], env=ENV, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield index_dir, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def _writers(index_dir: Path, folders) -> dict[str, list[str]]:
    labels = index_dir.parent / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{p},{'x' if i % 2 else 'y'}\n"
                                               for i, p in enumerate(sorted(_images(folders[0])))))
    return {
        "index": _index_cmd(folders[1], index_dir),
        "remove": ["remove", "--index", str(index_dir), "0"],
        "build-index": ["build-index", "--index", str(index_dir)],
        "train-head": ["train-head", "--index", str(index_dir), "--name", "h", "--labels", str(labels)],
        "whiten": ["whiten", "--index", str(index_dir), "--dim", "2"],
        "verify --repair": ["verify", "--index", str(index_dir), "--repair"],
    }


def test_every_writer_with_no_wait_fails_at_once_naming_the_holder(holder, folders):
    index_dir, proc = holder
    before = _paths(index_dir)
    for name, args in _writers(index_dir, folders).items():
        # the holder never lets go: a command that waited would run into the timeout
        run = subprocess.run([IMGSEARCH, *args, "--no-wait"], env=ENV, capture_output=True, text=True, timeout=120)
        assert run.returncode == 75, (name, run.stdout, run.stderr)
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, run.stderr)
        assert f"pid {proc.pid}" in lines[0] and "holder for the test" in lines[0], (name, lines)
    assert _paths(index_dir) == before


def test_a_writer_waits_for_the_holder_saying_whom_for_once(holder, folders):
    index_dir, proc = holder
    waiting = _start("remove", "--index", str(index_dir), str(sorted(folders[0].glob("*.png"))[0]))
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(waiting.stderr), daemon=True)
    reader.start()
    wait_until(lambda: any("waiting for" in line for line in err_lines), timeout=60, what="the waiting message")
    assert waiting.poll() is None  # it waits
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert waiting.wait(timeout=120) == 0
    reader.join(timeout=30)
    said = [line for line in err_lines if "waiting for" in line]
    assert len(said) == 1, err_lines
    assert str(index_dir) in said[0] and f"pid {proc.pid}" in said[0] and "holder for the test" in said[0]
    assert len(_paths(index_dir)) == 2


def test_the_lock_of_a_killed_holder_is_free_at_once(holder):
    index_dir, proc = holder
    with pytest.raises(IndexLockedError):
        with writer_lock(index_dir, wait=False):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with writer_lock(index_dir, wait=False):  # no stale lock: the kernel let go with the process
        pass
    run = subprocess.run([IMGSEARCH, "build-index", "--index", str(index_dir), "--no-wait"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_readers_do_not_wait_for_a_writer(holder, folders):
    from click.testing import CliRunner

    from imgsearch.search.engine import SearchEngine
    from imgsearch.web.cli import main

    index_dir, proc = holder
    engine = SearchEngine.open(index_dir)
    assert len(engine) == 3 and engine.search_id(0, k=2)
    runner = CliRunner()
    info = runner.invoke(main, ["info", "--index", str(index_dir)])
    assert info.exit_code == 0 and "images:     3" in info.output
    query = str(sorted(folders[0].glob("*.png"))[0])
    found = runner.invoke(main, ["search", "--index", str(index_dir), query, "-k", "1"])
    assert found.exit_code == 0 and query in found.output
    assert proc.poll() is None  # still held throughout


def test_the_lock_is_one_writer_per_folder_within_a_process_too(tmp_path):
    (tmp_path / "shards").mkdir()  # an index folder (its first run's shards): a writer locks only an index
    with writer_lock(tmp_path):
        with writer_lock(tmp_path, wait=False):  # re-entrant in one thread (a job calling a job)
            pass
        refused = []

        def other_thread():
            try:
                with writer_lock(tmp_path, wait=False):
                    pass
            except IndexLockedError as exc:
                refused.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=30)
        assert len(refused) == 1 and f"pid {os.getpid()}" in str(refused[0])
    with writer_lock(tmp_path, wait=False):
        pass


def test_the_lock_error_is_in_the_family_with_its_exit_code():
    from imgsearch.indexer.errors import ExecutionError

    assert issubclass(IndexLockedError, ExecutionError) and issubclass(IndexLockedError, RuntimeError)
    assert IndexLockedError.exit_code == 75


def test_a_writer_on_a_missing_folder_creates_nothing(tmp_path):
    run = subprocess.run([IMGSEARCH, "remove", "--index", str(tmp_path / "nowhere"), "0"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "not an imgsearch index" in run.stderr
    assert not (tmp_path / "nowhere").exists()


def test_the_spark_driver_holds_the_lock_too(holder, folders):
    pytest.importorskip("pyspark")
    from imgsearch.indexer.spark.images import index_images_spark

    index_dir, proc = holder
    with pytest.raises(IndexLockedError, match=f"pid {proc.pid}"):
        index_images_spark([folders[1]], index_dir, CFG, wait=False)
    assert len(_paths(index_dir)) == 3
