"""One error family: every error imgsearch raises on purpose is an ImgsearchError; the command
line prints it as one line (exit 1) and keeps the traceback of anything else (a bug); the web app
answers each kind with its documented HTTP status and code."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgsearch.indexer.errors import (
    DamagedIndexError,
    ExecutionError,
    ImageError,
    ImgsearchError,
    InvalidInputError,
    MissingDependencyError,
    NotFoundError,
)
from imgsearch.web.cli import main


def _error_classes() -> dict[str, type]:
    """Every public exception class defined in the indexer, search and web packages."""
    found = {}
    for name in ("imgsearch.indexer", "imgsearch.search", "imgsearch.web"):
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            module = importlib.import_module(info.name)
            for attr, value in vars(module).items():
                if (isinstance(value, type) and issubclass(value, BaseException) and not attr.startswith("_")
                        and value.__module__ == module.__name__):
                    found[f"{module.__name__}.{attr}"] = value
    return found


def test_every_public_error_class_is_an_imgsearch_error():
    classes = _error_classes()
    assert {"imgsearch.indexer.folder.store.IndexFormatError", "imgsearch.search.errors.UnknownIdError",
            "imgsearch.web.errors.ApiError", "imgsearch.search.client.replies.SearchAPIError"} <= set(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, ImgsearchError))
    assert outside == []


# the kind each error belongs to, and the builtin base callers caught it by before the family
KINDS = [
    ("imgsearch.indexer.folder.store", "IndexFormatError", DamagedIndexError, RuntimeError),
    ("imgsearch.indexer.folder.heads", "HeadError", InvalidInputError, ValueError),
    ("imgsearch.indexer.folder.heads", "UnknownHeadError", NotFoundError, ValueError),
    ("imgsearch.indexer.inputs.images", "ImageDecodeError", ImageError, ValueError),
    ("imgsearch.indexer.inputs.images", "ImageTooLargeError", ImageError, ValueError),
    ("imgsearch.indexer.inputs.sources", "SourceNotFoundError", NotFoundError, FileNotFoundError),
    ("imgsearch.indexer.inputs.samples", "SampleUnavailableError", MissingDependencyError, RuntimeError),
    ("imgsearch.indexer.model.backbones", "BackboneError", ImgsearchError, RuntimeError),
    ("imgsearch.indexer.model.torch_weights", "UnsafeWeightsError", InvalidInputError, ValueError),
    ("imgsearch.indexer.spark.images", "SparkJobError", ExecutionError, RuntimeError),
    ("imgsearch.search.engine", "UnknownIdError", NotFoundError, KeyError),
    ("imgsearch.search.engine", "InvalidVectorError", InvalidInputError, ValueError),
    ("imgsearch.search.thumbnails", "ImageUnavailableError", ImageError, OSError),
    ("imgsearch.indexer.errors", "MissingDependencyError", ImgsearchError, ImportError),
]


@pytest.mark.parametrize("module, name, kind, builtin", KINDS, ids=[k[1] for k in KINDS])
def test_each_error_has_its_kind_and_keeps_its_old_base(module, name, kind, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, kind) and issubclass(cls, builtin)


def test_search_errors_reexports_the_family():
    import imgsearch.search.errors

    for name in ("ImgsearchError", "InvalidInputError", "NotFoundError", "ImageError", "DamagedIndexError",
                 "MissingDependencyError", "ExecutionError", "IndexFormatError", "HeadError", "UnknownHeadError",
                 "ImageDecodeError", "ImageTooLargeError", "ImageUnavailableError", "UnknownIdError",
                 "InvalidVectorError"):
        assert issubclass(getattr(imgsearch.search.errors, name), ImgsearchError), name


def test_an_image_error_names_its_image():
    from imgsearch.indexer.inputs.images import ImageTooLargeError

    named = ImageTooLargeError("image too large: 9 megapixels").about("x.png")
    assert type(named) is ImageTooLargeError and str(named) == "x.png: image too large: 9 megapixels"


def test_config_refuses_a_memory_size_it_cannot_read():
    from imgsearch.indexer.config import IndexConfig

    with pytest.raises(InvalidInputError, match="memory size 'lots' not understood: write e.g. 512M"):
        IndexConfig(max_index_memory="lots")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        IndexConfig(batch_size=0)


# ---------------------------------------------------------------- the command line


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_cli_prints_a_domain_error_as_one_line(tmp_path):
    line = _one_error_line(CliRunner().invoke(main, ["info", "--index", str(tmp_path)]))
    assert f"{tmp_path} is not an imgsearch index" in line


def test_cli_refuses_a_bad_memory_size_before_doing_anything(tmp_path):
    result = CliRunner().invoke(main, ["index", str(tmp_path), "--index", str(tmp_path / "idx"),
                                       "--max-index-memory", "lots", "--no-progress"])
    assert "memory size 'lots' not understood" in _one_error_line(result)
    assert not (tmp_path / "idx").exists()


def test_cli_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    import imgsearch.search.engine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(imgsearch.search.engine.SearchEngine, "open", broken)
    result = CliRunner().invoke(main, ["info", "--index", str(tmp_path)])
    assert isinstance(result.exception, ZeroDivisionError) and "Error:" not in result.output
    with pytest.raises(ZeroDivisionError, match="a bug"):
        CliRunner().invoke(main, ["info", "--index", str(tmp_path)], catch_exceptions=False)


def test_the_console_prints_a_bugs_traceback(tmp_path):
    script = ("import imgsearch.search.engine\n"
              "imgsearch.search.engine.SearchEngine.open = lambda *args: 1 / 0\n"
              "from imgsearch.web.cli import main\n"
              f"main(['info', '--index', {str(tmp_path)!r}])\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 1
    assert "Traceback (most recent call last)" in run.stderr and "ZeroDivisionError" in run.stderr
    assert not run.stderr.startswith("Error:") and "\nError:" not in run.stderr


def test_cli_no_longer_hides_a_plain_value_error(tmp_path, monkeypatch):
    """A ValueError that is not an InvalidInputError is a bug, not a message."""
    import imgsearch.indexer.run.whiten

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(imgsearch.indexer.run.whiten, "set_whitening", broken)
    result = CliRunner().invoke(main, ["whiten", "--index", str(tmp_path)])
    assert type(result.exception) is ValueError and "Error:" not in result.output


def test_cli_usage_errors_stay_click_usage_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGSEARCH_INDEX", raising=False)
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 2 and "Missing option '--index'" in result.output


# ---------------------------------------------------------------- the web app


def _web_cases():
    from imgsearch.search.errors import (
        ChangedFileError,
        DamagedShardError,
        HeadError,
        ImageDecodeError,
        ImageTooLargeError,
        ImageUnavailableError,
        IndexFormatError,
        InvalidVectorError,
        UnknownHeadError,
        UnknownIdError,
    )

    generic = "internal server error; the server log has the details"
    return [
        (UnknownIdError(7), 404, "not_found", "no image with id 7 in the index"),
        (NotFoundError("no such thing"), 404, "not_found", "no such thing"),
        (UnknownHeadError("no head named 'x'"), 400, "unknown_head", "no head named 'x'"),
        (HeadError("head 'x' is damaged"), 400, "unknown_head", "head 'x' is damaged"),
        (ImageDecodeError("a.png: not an image"), 400, "invalid_image", "a.png: not an image"),
        (ImageTooLargeError("a.png: image too large"), 413, "image_too_large", "a.png: image too large"),
        (ImageUnavailableError("image 3 is gone"), 404, "image_unavailable", "image 3 is gone"),
        (ChangedFileError("image 3's file changed"), 409, "file_changed", "image 3's file changed"),
        (DamagedShardError("shard part-00001.parquet of /srv/index is unreadable", "part-00001.parquet"), 503,
         "shard_damaged", "shard part-00001.parquet of the index is damaged: this query reads it and cannot be "
                          "answered until the index is repaired ('imgsearch verify --repair'); queries that do not "
                          "read it are answered"),
        (InvalidVectorError("query vector contains NaN"), 400, "invalid_vector", "query vector contains NaN"),
        (InvalidInputError("k must be an integer"), 400, "bad_request", "k must be an integer"),
        # the server's own problems: logged, and the client learns nothing of its files
        (IndexFormatError("/srv/index/shard-0.parquet is unreadable"), 500, "internal_error", generic),
        (ExecutionError("worker died"), 500, "internal_error", generic),
        (MissingDependencyError("pip install x"), 500, "internal_error", generic),
    ]


def test_web_maps_each_error_kind_to_its_status():
    from flask import Flask

    from imgsearch.web.errors import register_error_handlers

    cases = _web_cases()
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/api/raise/<int:n>")
    def raise_case(n: int):
        raise cases[n][0]

    client = app.test_client()
    for n, (exc, status, code, message) in enumerate(cases):
        r = client.get(f"/api/raise/{n}")
        assert (r.status_code, r.get_json()) == (status, {"error": {"code": code, "message": message}}), exc
