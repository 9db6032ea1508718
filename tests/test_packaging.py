"""One import namespace (issue 29): a pip install exposes `imgsearch` and nothing else at the top level."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"imgsearch.indexer": "indexer", "imgsearch.search": "search", "imgsearch.web": "web"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by hand (package-dir maps them): a new folder must be added there."""
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"imgsearch": "imgsearch", **FOLDERS}
    on_disk = {"imgsearch"}  # every folder that holds files: code, or the page's templates and scripts
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                on_disk.add(".".join((package, *path.parent.relative_to(ROOT / folder).parts)))
    assert sorted(setuptools["packages"]) == sorted(on_disk)


def test_the_source_tree_mirrors_the_installed_names():
    """imgsearch/indexer, imgsearch/search and imgsearch/web are links to the top-level folders, so tools that
    read the tree (lint-imports) and a checkout that was never installed see the names an install gives."""
    for package, folder in FOLDERS.items():
        link = ROOT / "imgsearch" / package.split(".")[1]
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), link


def test_no_module_imports_the_old_top_level_names():
    """``indexer``, ``search`` and ``web`` are no import names of their own: a module importing one would load
    a second copy of the code (two SearchEngine classes, two error families)."""
    code = ("import importlib, pkgutil, sys\n"
            "import imgsearch\n"
            "for name in ('imgsearch.indexer', 'imgsearch.search', 'imgsearch.web'):\n"
            "    for info in pkgutil.walk_packages(importlib.import_module(name).__path__, name + '.'):\n"
            "        importlib.import_module(info.name)\n"
            "for name in imgsearch.__all__[1:]:\n"
            "    getattr(imgsearch, name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'indexer', 'search', 'web'}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "[]"


def test_the_front_door_is_curated_and_light(tmp_path):
    """`from imgsearch import ...` works beside a user's own search.py and web.py, and `import imgsearch`
    pulls in neither TensorFlow nor FAISS nor Flask until a name needs them."""
    for name in ("search", "web", "indexer"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the user\\'s own module was imported')\n")
    code = ("import sys\n"
            "import imgsearch\n"
            "light = sorted(m for m in ('tensorflow', 'faiss', 'flask', 'pyarrow') if m in sys.modules)\n"
            "from imgsearch import SearchEngine, SearchClient, IndexConfig, index_images, ImgsearchError\n"
            "print(light, SearchEngine.__module__, imgsearch.__version__, sorted(dir(imgsearch)) == sorted(imgsearch.__all__))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    light, module, version, listed = run.stdout.split()[-4:]
    assert (light, module, listed) == ("[]", "imgsearch.search.engine", "True")
    assert version == _pyproject()["project"]["version"]
    with pytest.raises(AttributeError, match="no attribute 'engine_internals'"):
        import imgsearch

        imgsearch.engine_internals  # noqa: B018


def test_imgsearch_version_is_the_installed_one():
    import imgsearch
    from click.testing import CliRunner

    from imgsearch.web.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"imgsearch {imgsearch.__version__}"


@pytest.mark.slow
def test_a_wheel_installs_one_top_level_package(tmp_path):
    """The regular (not editable) install: a wheel built from this tree holds `imgsearch/` and its metadata only,
    with the page's templates and scripts inside."""
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = tmp_path.glob("imgsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"imgsearch", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "imgsearch/search/engine.py" in names and "imgsearch/web/templates/index.html" in names
    assert any(n.startswith("imgsearch/web/static/") for n in names)
    assert not any(n.startswith(("imgsearch/tests", "imgsearch/scripts")) for n in names)
