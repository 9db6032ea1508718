"""The tests' fake model (tests/pixel_model.py) and the seam it uses: a registered backbone that runs itself.

Most search and web tests trust the fake to behave like a model where they need it to: the same image
gives the same vector, a mildly edited image stays nearest its original, different pictures do not
collide.  These tests hold it to that, and hold the seam to running nothing else.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.model.backbones import BackboneError
from imgsearch.indexer.model.runtime import make_runner
from tests.helpers import ROOT, fake_model_env
from tests.pixel_model import DIM, DUP_THRESHOLD, INPUT_SIZE, NAME, PixelProjection


def _photos(photos_dir):
    return sorted(photos_dir.glob("*.jpg"))


def _edited(path) -> bytes:
    """Cropped by 5 % on every side, halved, re-encoded as JPEG at quality 70."""
    with Image.open(path) as im:
        w, h = im.size
        im = im.convert("RGB").crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w // 2, h // 2))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def test_unit_vectors_of_its_dimension_the_same_every_time(pixel_embedder, photos_dir):
    images = np.stack([decode_image(p, INPUT_SIZE).array for p in _photos(photos_dir)])  # (n, 64, 64, 3)
    vectors = pixel_embedder.embed(images)
    assert vectors.shape == (len(images), DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pixel_embedder.embed(images), vectors)
    np.testing.assert_array_equal(PixelProjection()(images), pixel_embedder.backbone.runner(images))  # seeded
    assert (pixel_embedder.dim, pixel_embedder.backbone.input_size, pixel_embedder.precision) == (DIM, INPUT_SIZE,
                                                                                                  "float32")
    assert pixel_embedder.runtime.startswith("numpy pixel projection")


def test_a_mild_edit_stays_nearest_its_original_and_pictures_stay_apart(pixel_embedder, photos_dir):
    photos = _photos(photos_dir)
    originals = pixel_embedder.embed(np.stack([decode_image(p, INPUT_SIZE).array for p in photos]))
    edits = pixel_embedder.embed(np.stack([decode_image(io.BytesIO(_edited(p)), INPUT_SIZE).array for p in photos]))
    scores = edits @ originals.T  # (n, n): edit i against original j
    assert np.all(np.argmax(scores, axis=1) == np.arange(len(photos)))
    same = np.diag(scores)
    others = (originals @ originals.T)[~np.eye(len(photos), dtype=bool)]
    print(f"edit vs its original: min {same.min():.3f}; two photos: max {others.max():.3f}")
    assert others.max() < DUP_THRESHOLD < same.min()  # measured 0.887 < 0.92 < 0.953


def test_a_backbone_that_runs_itself_runs_its_float32_features_only(pixels):
    assert make_runner(pixels) is pixels.runner
    with pytest.raises(InvalidInputError, match="float32 features only, not int8"):
        make_runner(pixels, precision="int8")
    with pytest.raises(InvalidInputError, match="float32 features only, not float32 map"):
        make_runner(pixels, outputs="map")
    with pytest.raises(BackboneError, match="no Keras graph"):
        pixels.features


def test_an_index_built_with_it_is_searched_with_it_without_tensorflow(tmp_path, photos_dir):
    """In a fresh process that registers the fake: index, open, search by image; TensorFlow is never imported."""
    code = (
        "import json, sys\n"
        "from imgsearch.indexer.config import IndexConfig\n"
        "from imgsearch.indexer.model.backbones import register_backbone\n"
        "from imgsearch.indexer.run.pipeline import index_images\n"
        "from imgsearch.search.engine import SearchEngine\n"
        "from tests.pixel_model import NAME, SPEC\n"
        "if __name__ == '__main__':\n"
        "    register_backbone(SPEC)\n"
        f"    s = index_images([{str(photos_dir)!r}], {str(tmp_path / 'idx')!r}, IndexConfig(backbone=NAME, progress=False))\n"
        f"    engine = SearchEngine.open({str(tmp_path / 'idx')!r})\n"
        f"    hit = engine.search_image({str(photos_dir / 'coffee.jpg')!r}, 1)[0]\n"
        "    print(json.dumps({'added': s.added, 'first': hit.path, 'score': hit.score, 'model': engine.manifest['backbone'],\n"
        "                      'tensorflow': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules}))\n"
    )
    script = tmp_path / "run.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["added"] == len(_photos(photos_dir)) and out["first"] == str(photos_dir / "coffee.jpg")
    assert out["score"] == pytest.approx(1.0, abs=1e-4)
    assert (out["model"]["name"], out["model"]["precision"], out["model"]["dim"]) == (NAME, "float32", DIM)
    assert not out["tensorflow"] and not out["keras"]


def test_a_child_given_the_fake_model_env_runs_imgsearch_with_it(tmp_path, photos_dir):
    """``fake_model_env()``: the console script, as a user runs it, indexes and searches with the fake; a child
    without it knows the real models only and says so."""
    imgsearch = str(Path(sys.executable).parent / "imgsearch")
    index = tmp_path / "idx"
    run = subprocess.run([imgsearch, "index", str(photos_dir), "--index", str(index), "--backbone", NAME,
                          "--no-progress"], capture_output=True, text=True, timeout=120, env=fake_model_env())
    assert run.returncode == 0, run.stderr
    found = subprocess.run([imgsearch, "search", "--index", str(index), "--json", "-k", "1",
                            str(photos_dir / "rocket.jpg")], capture_output=True, text=True, timeout=120,
                           env=fake_model_env())
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["path"] == str(photos_dir / "rocket.jpg")
    plain = subprocess.run([imgsearch, "search", "--index", str(index), str(photos_dir / "rocket.jpg")],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and f"unknown backbone '{NAME}'" in plain.stderr
