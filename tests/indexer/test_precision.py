"""int8 precision (issue 15): the calibrated full-integer model, and an index's precision honoured everywhere.

An int8 embedding differs from the float32 one of the same image (cosine about
0.99), so "the query embedding of an indexed image equals its stored embedding
within 1e-5" tells which model answered a query.

A test that needs the int8 model is ``slow``: the calibrated conversion alone takes tens of seconds in a
run's empty cache.  The float32 side and the rules run in the inner loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError
from imgsearch.indexer.inputs.calibration import CALIBRATION, CalibrationSet
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.model.embedder import Embedder

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


@pytest.fixture(scope="session")
def int8_embedder(lite0):
    return Embedder(lite0, precision="int8", calibration=CALIBRATION)


@pytest.fixture(scope="session")
def int8_index(tmp_path_factory, photos_dir, int8_embedder):
    from imgsearch.indexer.run.pipeline import index_images

    index_dir = tmp_path_factory.mktemp("int8") / "idx"
    index_images([photos_dir], index_dir, IndexConfig(progress=False, precision="int8"))
    return index_dir


def _photo_files(photos_dir: Path) -> list[Path]:
    return sorted(p for p in photos_dir.rglob("*") if p.is_file())


def _stored(index_dir: Path) -> dict[str, np.ndarray]:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["path", "embedding"])
    return {p: np.asarray(e, np.float32) for p, e in zip(table.column("path").to_pylist(),
                                                       table.column("embedding").to_pylist())}


@pytest.mark.slow
def test_int8_embeddings_are_unit_vectors_close_to_float32(lite0, embedder, int8_embedder, photos_dir):
    images = np.stack([decode_image(f, lite0.input_size).array for f in _photo_files(photos_dir)]
                      + list(CalibrationSet(count=24, seed=7).images(lite0.input_size)))
    a8, a32 = int8_embedder.embed(images), embedder.embed(images)
    cosine = (a8 * a32).sum(1)
    print(f"int8 vs float32 cosine on {len(images)} images: median {np.median(cosine):.4f}, min {cosine.min():.4f}")
    np.testing.assert_allclose(np.linalg.norm(a8, axis=1), 1.0, atol=1e-5)
    assert np.median(cosine) >= 0.95 and cosine.min() >= 0.85
    assert cosine.max() < 0.99999  # another model, not the float32 one under a new name
    assert "int8" in int8_embedder.runtime


@pytest.mark.slow
def test_calibration_set_and_the_cached_model_are_deterministic(lite0, int8_embedder, tmp_path, monkeypatch):
    from imgsearch.indexer.config import default_cache_dir
    from imgsearch.indexer.model import runtime

    assert CALIBRATION.identity() == CalibrationSet().identity()
    np.testing.assert_array_equal(CalibrationSet(count=6).images(64), CalibrationSet(count=6).images(64))
    assert not np.array_equal(CalibrationSet(count=6, seed=1).images(64), CalibrationSet(count=6).images(64))
    assert CalibrationSet(seed=1).identity() != CALIBRATION.identity()
    path = runtime._tflite_cache_path(lite0, default_cache_dir(), "int8", CALIBRATION)
    assert path.is_file() and path != runtime._tflite_cache_path(lite0, default_cache_dir())
    assert path != runtime._tflite_cache_path(lite0, default_cache_dir(), "int8", CalibrationSet(seed=1))

    def no_conversion(*args):
        raise AssertionError("the cached int8 model was converted again")

    monkeypatch.setattr(runtime, "_convert_int8", no_conversion)
    assert runtime.tflite_model(lite0, default_cache_dir(), "int8", CALIBRATION) == path.read_bytes()
    assert Embedder(lite0, precision="int8", calibration=CALIBRATION).precision == "int8"


@pytest.mark.slow
def test_a_cached_int8_model_opens_without_the_heavy_imports(int8_embedder):
    """Start-up is part of every indexing run's speed: with the int8 model cached, neither TensorFlow nor
    the packages that ship the calibration photos (scikit-learn: ~2 s to import) are imported."""
    code = ("import sys\n"
            "from imgsearch.indexer.inputs.calibration import CALIBRATION\n"
            "from imgsearch.indexer.model.backbones import load_backbone\n"
            "from imgsearch.indexer.model.embedder import Embedder\n"
            "Embedder(load_backbone('efficientnet-lite0'), precision='int8', calibration=CALIBRATION)\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib', 'scipy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "[]", out.stdout


@pytest.mark.slow
def test_an_int8_index_records_its_precision_and_calibration(int8_index):
    backbone = EmbeddingStore(int8_index).read_manifest()["backbone"]
    assert backbone["precision"] == "int8"
    assert backbone["calibration"] == CALIBRATION.identity()


@pytest.mark.slow
def test_search_engine_queries_an_int8_index_with_the_int8_model(int8_index, photos_dir, embedder):
    from imgsearch.search.engine import SearchEngine

    engine = SearchEngine.open(int8_index)  # the default config: nothing says int8 but the manifest
    stored = _stored(int8_index)
    files = _photo_files(photos_dir)
    query = engine.embed_images([str(f) for f in files])
    for f, q in zip(files, query):
        np.testing.assert_allclose(q, stored[str(f)], atol=1e-5)
    size = engine._get_embedder().backbone.input_size
    as_float32 = embedder.embed(np.stack([decode_image(f, size).array for f in files]))
    assert ((as_float32 * query).sum(1) < 0.9999).any()  # a float32 query would not match so closely


@pytest.mark.slow
def test_cli_search_of_an_int8_index_uses_the_int8_model(int8_index, photos_dir):
    image = _photo_files(photos_dir)[0]
    out = subprocess.run([IMGSEARCH, "search", "--index", str(int8_index), "--json", "-k", "1", str(image)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    top = json.loads(out.stdout.splitlines()[-1])["results"][0]
    assert top["path"] == str(image) and top["score"] >= 1 - 1e-5


@pytest.mark.slow
def test_http_search_of_an_int8_index_uses_the_int8_model(int8_index, photos_dir):
    from tests.helpers import LiveServer
    from imgsearch.web import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(int8_index)}))
    try:
        image = _photo_files(photos_dir)[1]
        r = requests.post(server.url + "/api/search", files={"image": image.read_bytes()}, data={"k": "1"},
                          timeout=120)
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]
        assert top["path"] == str(image) and top["score"] >= 1 - 1e-5
    finally:
        server.close()


@pytest.mark.slow
def test_mixing_precisions_on_one_index_is_refused(int8_index, photos_dir, cnn_index, tmp_path):
    from imgsearch.indexer.run.pipeline import index_images

    with pytest.raises(IndexFormatError, match="built with precision int8, not float32"):
        index_images([photos_dir], int8_index, IndexConfig(progress=False, precision="float32"))
    out = subprocess.run([IMGSEARCH, "index", str(photos_dir), "--index", str(cnn_index[0]),
                          "--precision", "int8", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "Error: " in out.stderr and "built with precision float32, not int8" in out.stderr
    assert "Traceback" not in out.stderr
    # without --precision, a run keeps the index's
    index_images([photos_dir], int8_index, IndexConfig(progress=False))
    assert EmbeddingStore(int8_index).read_manifest()["backbone"]["precision"] == "int8"


def test_int8_needs_tflite_and_a_known_precision():
    with pytest.raises(InvalidInputError, match="int8 runs only through TFLite"):
        IndexConfig(precision="int8", runtime="tf")
    with pytest.raises(InvalidInputError, match="precision must be float32 or int8"):
        IndexConfig(precision="int4")
    out = subprocess.run([IMGSEARCH, "index", "nowhere", "--index", "nowhere-idx", "--precision", "int8",
                          "--runtime", "tf"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "int8 runs only through TFLite" in out.stderr


def test_a_float32_index_stays_float32(cnn_index):
    from imgsearch.indexer.folder.manifest import model_precision

    manifest = EmbeddingStore(cnn_index[0]).read_manifest()
    assert model_precision(manifest) == {"precision": "float32", "calibration": None}
    assert model_precision({"backbone": {"name": "efficientnet-lite0"}})["precision"] == "float32"  # old manifests


@pytest.mark.slow
def test_a_server_following_a_folder_rebuilt_in_int8_switches_model(cnn_index, int8_index, photos_dir, tmp_path):
    import shutil

    from imgsearch.search.engine import SearchEngine

    folder = tmp_path / "idx"
    shutil.copytree(cnn_index[0], folder)
    engine = SearchEngine.open(folder)
    engine.warm_up()  # the float32 model is loaded
    shutil.rmtree(folder)
    shutil.copytree(int8_index, folder)  # the same folder, rebuilt in int8
    new = engine.reload()
    image = _photo_files(photos_dir)[2]
    np.testing.assert_allclose(new.embed_images([str(image)])[0], _stored(folder)[str(image)], atol=1e-5)


@pytest.mark.slow
def test_an_int8_index_has_a_format_earlier_releases_refuse(int8_index, cnn_index):
    from imgsearch.indexer.folder.store import (
        FILE_METADATA_FORMAT_VERSION,
        FORMAT_VERSION,
        INT8_FORMAT_VERSION,
        RESAMPLE_FORMAT_VERSION,
        _format_version,
    )

    # releases before precisions read only FORMAT_VERSION: they refuse an int8 index rather than query it in float32
    assert EmbeddingStore(int8_index).read_manifest()["format_version"] != FORMAT_VERSION
    # and the releases before the resize was recorded refuse an index they would query with another resize
    # (new indexes also hold the file metadata columns, the newest format: refused by every release before them)
    assert EmbeddingStore(cnn_index[0]).read_manifest()["format_version"] == FILE_METADATA_FORMAT_VERSION
    assert _format_version({"backbone": {"name": "x", "resample": "bilinear"}}) == RESAMPLE_FORMAT_VERSION
    old = {"backbone": {"name": "efficientnet-lite0"}}
    assert _format_version(old) == FORMAT_VERSION  # what every earlier float32 index is, and stays
    assert _format_version({"backbone": {"name": "efficientnet-lite0", "precision": "int8"}}) == INT8_FORMAT_VERSION
    assert _format_version({"backbone": {"name": "x", "resample": "bicubic", "precision": "int8"}}) == 2


def test_int8_is_offered_for_the_efficientnet_lite_backbones_only():
    from imgsearch.indexer.model.backbones import BACKBONES
    from imgsearch.indexer.model.runtime import check_int8_backbone

    for name in BACKBONES:
        if name.startswith("efficientnet-lite"):
            check_int8_backbone(name)
        else:
            with pytest.raises(InvalidInputError, match="offered for the efficientnet-lite backbones"):
                check_int8_backbone(name)


def test_a_new_index_is_float32_for_the_backbones_without_int8(lite0):
    """Which precision efficientnet-lite gets is measured on the CPU: tests/indexer/test_precision_choice.py."""
    from imgsearch.indexer.model import runtime
    from imgsearch.indexer.model.backbones import BACKBONES, get_spec

    class Other:
        runner = None

        def __init__(self, name):
            self.name = name

    for name in BACKBONES:
        if not name.startswith("efficientnet-lite"):
            assert runtime.default_precision(Other(get_spec(name).name))[0] == "float32"


@pytest.mark.slow
def test_imgsearch_index_without_precision_builds_the_measured_one_and_keeps_an_index_own(photos_dir, cnn_index,
                                                                                        tmp_path):
    from imgsearch.indexer.config import default_cache_dir
    from imgsearch.indexer.model.backbones import load_backbone
    from imgsearch.indexer.model.runtime import default_precision

    out = subprocess.run([IMGSEARCH, "index", str(photos_dir), "--index", str(tmp_path / "new"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    manifest = EmbeddingStore(tmp_path / "new").read_manifest()
    chosen, reason = default_precision(load_backbone("efficientnet-lite0"), "tflite", default_cache_dir(), CALIBRATION)
    assert manifest["backbone"]["precision"] == chosen and manifest["backbone"]["precision_reason"] == reason
    if chosen == "int8":
        assert manifest["backbone"]["calibration"] == CALIBRATION.identity()
    # a float32 index (an earlier release's default) stays float32 when it grows without --precision
    import shutil

    shutil.copytree(cnn_index[0], tmp_path / "old")
    extra = tmp_path / "extra"
    extra.mkdir()
    from PIL import Image

    Image.open(_photo_files(photos_dir)[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(extra / "new.jpg")
    before = EmbeddingStore(tmp_path / "old").read_manifest()["count"]
    out = subprocess.run([IMGSEARCH, "index", str(extra), "--index", str(tmp_path / "old"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    manifest = EmbeddingStore(tmp_path / "old").read_manifest()
    assert manifest["backbone"]["precision"] == "float32" and manifest["count"] == before + 1


@pytest.mark.slow
def test_a_new_index_records_its_resize_and_embeds_with_it(int8_index, photos_dir, int8_embedder, lite0):
    """New indexes resize bilinear (faster, as good); the manifest says so and every image is resized so."""
    from imgsearch.indexer.folder.store import RESAMPLE_FORMAT_VERSION

    manifest = EmbeddingStore(int8_index).read_manifest()
    assert manifest["backbone"]["resample"] == "bilinear" and "bilinear" in manifest["backbone"]["resize"]
    assert manifest["format_version"] >= RESAMPLE_FORMAT_VERSION  # releases that would resize bicubic refuse it
    image = _photo_files(photos_dir)[1]
    stored = _stored(int8_index)[str(image)]
    bilinear = int8_embedder.embed(decode_image(image, lite0.input_size, resample="bilinear").array[None])[0]
    bicubic = int8_embedder.embed(decode_image(image, lite0.input_size, resample="bicubic").array[None])[0]
    np.testing.assert_allclose(stored, bilinear, atol=1e-5)
    assert not np.allclose(stored, bicubic, atol=1e-3)


def test_an_index_without_a_recorded_resize_is_queried_bicubic(cnn_index, photos_dir, embedder, lite0, tmp_path):
    """Indexes from before the filter was recorded were resized bicubic: their queries still are."""
    import shutil

    from imgsearch.search.engine import SearchEngine

    folder = tmp_path / "old"
    shutil.copytree(cnn_index[0], folder)
    store = EmbeddingStore(folder)
    manifest = store.read_manifest()
    del manifest["backbone"]["resample"]  # as an earlier release wrote it
    store.publish(manifest)
    assert "resample" not in store.read_manifest()["backbone"]
    image = _photo_files(photos_dir)[1]
    query = SearchEngine.open(folder).embed_images([str(image)])[0]
    bicubic = embedder.embed(decode_image(image, lite0.input_size, resample="bicubic").array[None])[0]
    np.testing.assert_allclose(query, bicubic, atol=1e-5)


def test_a_manifest_with_an_unknown_resize_is_refused_with_its_name(cnn_index, tmp_path):
    import shutil

    from imgsearch.indexer.errors import DamagedIndexError

    shutil.copytree(cnn_index[0], tmp_path / "idx")
    path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["backbone"]["resample"] = "lanczos"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DamagedIndexError, match="backbone.resample"):
        EmbeddingStore(tmp_path / "idx").read_manifest()
