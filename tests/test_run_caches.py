"""A test run never reads or writes the user's caches (issue 28): its own, empty at the start, shared by its tests."""

import os
import subprocess
import sys
from pathlib import Path

from tests import run_caches


def test_every_cache_of_this_run_is_outside_the_users_home(request):
    from imgsearch.indexer.config import IndexConfig, default_cache_dir

    run = request.config._imgsearch_caches
    user_home = Path(run.saved.get("HOME") or "/nonexistent")  # {} in an xdist worker: the controller saved them
    for variable in run_caches.CACHE_VARIABLES:
        path = Path(os.environ[variable])
        assert path.is_relative_to(run.root), variable
        assert not path.is_relative_to(user_home) or run.root.is_relative_to(user_home), variable
    assert default_cache_dir() == IndexConfig().cache_dir == run.root / "imgsearch"
    assert Path.home() == run.root / "home"
    assert not [variable for variable in run_caches.UNSET_VARIABLES if variable in os.environ]


def test_the_users_api_keys_never_reach_a_test(tmp_path, monkeypatch):
    """A user's keys file and client key are theirs: a nested run unsets them, and puts them back after."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("IMGSEARCH_TEST_CACHE", raising=False)
    monkeypatch.setenv("IMGSEARCH_KEYS", str(tmp_path / "users-keys.json"))
    monkeypatch.setenv("IMGSEARCH_API_KEY", "isk_users_own")
    nested = run_caches.isolate_caches()
    from imgsearch.web.keys import default_keys_file

    assert "IMGSEARCH_KEYS" not in os.environ and "IMGSEARCH_API_KEY" not in os.environ
    assert default_keys_file().is_relative_to(nested.root)
    run_caches.restore_caches(nested)
    assert os.environ["IMGSEARCH_API_KEY"] == "isk_users_own"


def test_a_subprocess_of_the_run_inherits_its_caches(request):
    run = request.config._imgsearch_caches
    out = subprocess.run([sys.executable, "-c", "from imgsearch.indexer.config import default_cache_dir; print(default_cache_dir())"],
                         capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == run.root / "imgsearch"


def test_a_change_to_the_users_caches_is_reported(tmp_path, monkeypatch):
    """The check behind the run's own guard: a nested run over a made-up user home sees what was written there."""
    user = tmp_path / "user"
    (user / ".cache" / "imgsearch" / "models").mkdir(parents=True)
    (user / ".cache" / "imgsearch" / "models" / "kept.tflite").write_bytes(b"x")
    for variable in run_caches.CACHE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("IMGSEARCH_TEST_CACHE", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # a controller's run, even inside an xdist worker
    monkeypatch.setenv("HOME", str(user))

    nested = run_caches.isolate_caches()
    assert os.environ["IMGSEARCH_CACHE"] == str(nested.root / "imgsearch") and nested.temporary
    (nested.root / "imgsearch" / "models").mkdir()  # the run's own cache: not reported
    (user / ".cache" / "imgsearch" / "models" / "leaked.tflite").write_bytes(b"y")
    (user / ".keras").mkdir()
    changed = run_caches.restore_caches(nested)

    assert os.environ["HOME"] == str(user) and "IMGSEARCH_CACHE" not in os.environ
    assert not nested.root.exists()
    assert any(line.endswith("leaked.tflite: created") for line in changed), changed
    assert f"{user / '.keras'}: created" in changed, changed
    assert not any("kept.tflite" in line for line in changed)
    assert run_caches.restore_caches(run_caches.isolate_caches()) == []  # nothing written: nothing reported


def test_an_xdist_worker_shares_the_controllers_caches_and_leaves_them_be(monkeypatch):
    """Workers start with the controller's variables: they use its folders, and neither remove nor re-point them."""
    monkeypatch.delenv("IMGSEARCH_TEST_CACHE", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    before = {variable: os.environ[variable] for variable in run_caches.CACHE_VARIABLES}

    worker = run_caches.isolate_caches()
    assert {variable: os.environ[variable] for variable in run_caches.CACHE_VARIABLES} == before
    assert worker.root == Path(before["IMGSEARCH_CACHE"]).parent and not worker.temporary
    assert run_caches.restore_caches(worker) == []
    assert worker.root.is_dir() and {variable: os.environ[variable] for variable in run_caches.CACHE_VARIABLES} == before
