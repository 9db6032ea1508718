"""Importing imgsearch changes nothing for the process; what is cached can be forgotten explicitly."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- defaults read when called, not on import
def test_cache_dir_set_after_import_is_used(monkeypatch, tmp_path, built_index):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.model import backbones
    from imgsearch.search.engine import SearchEngine

    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "later"))  # every module above is imported already
    assert IndexConfig().cache_dir == tmp_path / "later"
    assert SearchEngine.open(built_index[0]).config.cache_dir == tmp_path / "later"  # its config=None default
    backbones.load_backbone("efficientnet-lite0")  # cache_dir=None: resolved now
    assert ("efficientnet-lite0", None, str(tmp_path / "later")) in backbones._LOADED


# Files another branch of issue 13 rewrites (indexer/run/pipeline.py, indexer/spark/images.py): their
# `config: IndexConfig = IndexConfig()` defaults are replaced there; tolerated here until it lands.
def test_no_default_argument_is_built_on_import():
    """A default like ``config=IndexConfig()`` is built once, on import: it freezes $IMGSEARCH_CACHE."""
    found = []
    for package in ("indexer", "search", "web"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    for default in [*node.args.defaults, *filter(None, node.args.kw_defaults)]:
                        if isinstance(default, ast.Call):
                            found.append(f"{rel}:{default.lineno}: {ast.unparse(default)}")
    assert not found, "use `config: X | None = None`, resolved inside the function:\n" + "\n".join(found)


# ---------------------------------------------------------------- Pillow's globals
_PILLOW_STATE = """
import json, sys, warnings
from PIL import Image, ImageFile
def state():
    # numpy and others add filters of their own on import: only those for Pillow's warnings count
    return [Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES,
            [repr(f) for f in warnings.filters if "PIL" in repr(f[2])]]
before = state()
import imgsearch.indexer.inputs.images, imgsearch.indexer.inputs.reader, imgsearch.search.engine
imported = state()
from imgsearch.indexer.inputs.images import decode_image
decode_image(sys.argv[1], 32)
print(json.dumps({"before": before, "imported": imported, "decoded": state()}))
"""


def test_importing_the_decoder_leaves_pillow_as_it_was(photos_dir):
    """In a fresh interpreter: importing changes none of Pillow's globals; the first decode sets them."""
    run = subprocess.run([sys.executable, "-c", _PILLOW_STATE, str(photos_dir / "coffee.jpg")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    state = json.loads(run.stdout.splitlines()[-1])
    assert state["imported"] == state["before"]
    from imgsearch.indexer.config import MAX_PIXELS

    max_pixels, load_truncated, filters = state["decoded"]
    assert max_pixels == MAX_PIXELS and load_truncated is False
    assert any("DecompressionBombWarning" in f and "ignore" in f for f in filters)


def test_decoding_applies_its_settings_even_after_another_library_changed_them(monkeypatch, photos_dir):
    from imgsearch.indexer.config import MAX_PIXELS
    from imgsearch.indexer.inputs.images import ImageDecodeError, decode_image

    data = (photos_dir / "coffee.jpg").read_bytes()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what some other library may do
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_image(data[: len(data) // 3], 32)  # truncated: refused, not completed with grey
    assert decode_image(data, 32).array.shape == (32, 32, 3)  # Pillow's limit is the decoder's again
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS


# ---------------------------------------------------------------- caches, forgotten explicitly
def test_clear_loaded_backbones(tmp_path):
    from imgsearch.indexer.model import backbones

    first = backbones.load_backbone("efficientnet-lite0", cache_dir=tmp_path)
    assert backbones.load_backbone("efficientnet-lite0", cache_dir=tmp_path) is first
    backbones.clear_loaded()
    assert backbones.load_backbone("efficientnet-lite0", cache_dir=tmp_path) is not first


def test_clear_whitening_cache(tmp_path):
    from imgsearch.indexer.folder import whitening

    rng = np.random.default_rng(0)
    whitening.Whitening(rng.normal(size=4).astype(np.float32),
                        rng.normal(size=(4, 2)).astype(np.float32)).save(tmp_path / "w.npz")
    first = whitening.load_for(tmp_path, {"file": "w.npz"})
    assert whitening.load_for(tmp_path, {"file": "w.npz"}) is first
    whitening.clear_cache()
    again = whitening.load_for(tmp_path, {"file": "w.npz"})
    assert again is not first
    np.testing.assert_array_equal(again.projection, first.projection)


def test_clear_worker_keys(photos_dir):
    from imgsearch.indexer.inputs import reader
    from imgsearch.indexer.inputs.sources import ImageFile as Listed

    path = photos_dir / "coffee.jpg"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    file = Listed(str(path), "")
    reader._init_worker(reader.known_keys([sha]))  # what a decoding process is started with
    try:
        assert isinstance(reader.read_one(file, 32), reader.AlreadyIndexed)
    finally:
        reader.clear_worker_keys()
    assert isinstance(reader.read_one(file, 32), reader.Decoded)


def test_clear_spark_embedders(lite0):
    from imgsearch.indexer.config import default_cache_dir
    from imgsearch.indexer.spark import tasks as spark_tasks

    settings = spark_tasks.TaskSettings("efficientnet-lite0", None, "tflite", 8, str(default_cache_dir()),
                                        None, None)
    first = spark_tasks.process_embedder(settings, 1)
    assert spark_tasks.process_embedder(settings, 1) is first
    spark_tasks.clear_embedders()
    assert spark_tasks.process_embedder(settings, 1) is not first
    spark_tasks.clear_embedders()
