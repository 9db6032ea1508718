"""A test run's caches are its own: empty when the run starts, shared by its tests, never the user's.

A test that needs a converted model makes it through the product's own code (the first test to ask
converts it, later ones reuse it), so a run on a fresh machine and a run here ask for the same work
and fail alike.  ``IMGSEARCH_TEST_CACHE=DIR`` keeps one run's caches in DIR for the next run (a faster
inner loop; CI never sets it).  The user's own caches are listed before the run and after it: a run
that changed them fails (``conftest.pytest_sessionfinish``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# Every per-user cache or settings folder the product or a library it drives reads or fills, by the
# variable that moves it: converted models and the npm emoji package (imgsearch), keras.applications
# weights (Keras), hub downloads (KerasHub, Hugging Face, Kaggle, TF Hub), matplotlib's font list,
# npm's download cache, and whatever else follows XDG or writes under $HOME.
CACHE_VARIABLES = {
    "IMGSEARCH_CACHE": "imgsearch",
    "KERAS_HOME": "keras",
    "KAGGLEHUB_CACHE": "kagglehub",
    "HF_HOME": "huggingface",
    "TFHUB_CACHE_DIR": "tfhub",
    "MPLCONFIGDIR": "matplotlib",
    "npm_config_cache": "npm",
    "XDG_CACHE_HOME": "xdg-cache",
    "XDG_CONFIG_HOME": "xdg-config",  # the server's API keys file lives there by default
    "HOME": "home",
}


# Variables that would hand a test the user's own settings: their API keys file and the key the client sends.
# A run unsets them (and puts them back after).
UNSET_VARIABLES = ("IMGSEARCH_KEYS", "IMGSEARCH_API_KEY")


@dataclass
class RunCaches:
    root: Path
    temporary: bool  # made for this run, removed after it
    saved: dict[str, str | None]  # the variables as they were
    watched: dict[Path, dict[str, tuple[int, int]]] = field(default_factory=dict)  # the user's caches, listed


def user_caches(environ=os.environ) -> list[Path]:
    """The user's own caches that a test run could touch if it slipped: imgsearch's, Keras's, matplotlib's."""
    home = Path(environ.get("HOME") or Path.home())
    xdg = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    return [Path(environ.get("IMGSEARCH_CACHE") or xdg / "imgsearch").expanduser(),
            Path(environ.get("KERAS_HOME") or home / ".keras").expanduser(),
            Path(environ.get("MPLCONFIGDIR") or xdg / "matplotlib").expanduser()]


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: relative path -> (size, mtime in ns); {} when it does not exist."""
    if not root.exists():
        return {}
    found = {".": (0, 0)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            found[str(path.relative_to(root))] = (0 if name in dirs else st.st_size, st.st_mtime_ns)
    return found


def isolate_caches() -> RunCaches:
    """Point every cache variable at this run's folders (call before the product is imported).

    An xdist worker (``PYTEST_XDIST_WORKER``) was started by the run's controller with the controller's
    variables, which already point at the run's folders: the workers share them (each model is converted
    once per run, whichever worker asks first; the cache writes are atomic), and only the controller makes,
    watches and removes them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return RunCaches(Path(os.environ["IMGSEARCH_CACHE"]).parent, temporary=False, saved={})
    keep = os.environ.get("IMGSEARCH_TEST_CACHE")
    root = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="imgsearch-test-run-"))
    run = RunCaches(root, temporary=not keep,
                    saved={v: os.environ.get(v) for v in (*CACHE_VARIABLES, *UNSET_VARIABLES)})
    run.watched = {path: listing(path) for path in user_caches()}
    for variable, folder in CACHE_VARIABLES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(root / folder)
    for variable in UNSET_VARIABLES:
        os.environ.pop(variable, None)
    return run


def restore_caches(run: RunCaches) -> list[str]:
    """Put the variables back, remove a temporary root, and say what changed in the user's caches."""
    for variable, value in run.saved.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    if run.temporary:
        shutil.rmtree(run.root, ignore_errors=True)
    changed = []
    for path, before in run.watched.items():
        after = listing(path)
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                state = "created" if name not in before else "removed" if name not in after else "changed"
                changed.append(f"{path / name}: {state}")
    return changed
