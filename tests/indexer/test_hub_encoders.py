"""Encoders from KerasHub presets (issue 33, item 1): a preset folder (``save_to_preset``) or a preset name,
through the same registry, runtimes, manifest and CLI as the CNNs.

The model tests build a two-layer DINOv2 with random weights (tests/hub_presets.py, fixture ``tiny_dinov2``),
save it as a preset folder and load it by ``--backbone FOLDER``: the path a downloaded preset takes too.  They
run TensorFlow, so they are ``slow`` (conftest.REAL_MODEL_FIXTURES); the errors for a missing, corrupt or
undownloadable preset, and for a missing keras-hub, are found without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.indexer.errors import ImgsearchError, MissingDependencyError
from imgsearch.indexer.model import backbones, hub
from imgsearch.indexer.model.backbones import BackboneError, load_backbone
from imgsearch.indexer.model.hub import CLASS_TOKEN, PresetError
from tests.hub_presets import DIM, SIZE, write_tiny_dinov2

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# ---------------------------------------------------------------- without TensorFlow


def test_a_preset_name_or_folder_is_a_backbone_and_an_unknown_name_says_what_is_accepted(tmp_path):
    assert hub.is_preset("dinov2_small") and hub.is_preset("dinov2_base")  # KerasHub's table, read without importing it
    assert hub.is_preset(str(tmp_path)) and hub.is_preset("./copied/preset")
    assert hub.is_preset("hub:kaggle://a/b/keras/c")
    assert hub.is_preset("kaggle://keras/dinov2/keras/dinov2_base/1") and not hub.is_folder("kaggle://a/b/keras/c")
    assert not hub.is_preset("resnet51") and not hub.is_preset("efficientnet-lite9")
    with pytest.raises(BackboneError, match="unknown backbone 'resnet51'.*KerasHub preset name.*preset folder"):
        load_backbone("resnet51")


def test_a_missing_or_damaged_preset_folder_is_a_one_line_error_saying_what_to_do(tmp_path):
    backbones.clear_loaded()
    with pytest.raises(PresetError, match="does not exist.*save_to_preset") as missing:
        load_backbone(str(tmp_path / "nowhere"))
    _one_line(missing.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PresetError, match="not a KerasHub preset folder.*no config.json") as not_preset:
        load_backbone(str(empty))
    _one_line(not_preset.value)
    (empty / "config.json").write_text('{"class_name": "DINOV2Backbone", "config": {"image_sh')  # cut short
    with pytest.raises(PresetError, match="not readable JSON.*damaged") as damaged:
        load_backbone(str(empty))
    _one_line(damaged.value)
    (empty / "config.json").write_text('{"registered_name": "keras_hub>DINOV2Backbone", "config": {}}')
    with pytest.raises(PresetError, match="no square input size"):
        load_backbone(str(empty))
    (empty / "config.json").write_text('{"registered_name": "keras_hub>DINOV2Backbone", '
                                       '"config": {"image_shape": [56, 56, 3], "hidden_dim": 32}}')
    (empty / "image_converter.json").write_text('{"config": {"image_size": [56, 56], "scale": [1, 2]}}')
    with pytest.raises(PresetError, match=r"has scale \[1, 2\], not a number or three"):
        load_backbone(str(empty))
    (empty / "image_converter.json").write_text('{"config": {"image_size": [56, 56], "scale": 0.5}}')
    opened = load_backbone(str(empty))  # one number for every channel; float32 for the runtimes
    assert (opened.input_size, opened.dim) == (56, 32)
    assert opened.preprocess_np(np.full((1, 2, 2, 3), 10, np.uint8)).dtype == np.float32


def test_without_keras_hub_a_preset_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'imgsearch\[hub\]'"):
        hub.require_keras_hub()


def test_the_cli_prints_one_line_for_a_missing_preset_folder(tmp_path, photos_dir):
    run = subprocess.run([IMGSEARCH, "index", str(photos_dir), "--index", str(tmp_path / "idx"), "--backbone",
                          str(tmp_path / "no-such-preset"), "--no-progress"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "preset folder" in lines[0] and "does not exist" in lines[0], run.stderr
    assert not (tmp_path / "idx" / "manifest.json").exists()


@pytest.mark.parametrize("preset, message", [("x", "'backbone.preset' must be an object"),
                                             ({"sha256": 3}, "'backbone.preset.sha256' must be a string"),
                                             ({}, "'backbone.preset.sha256' must be a string")])
def test_a_manifest_whose_preset_record_is_damaged_is_refused_not_trusted(preset, message):
    """The digest is what refuses another preset's embeddings: a record without one must not open unchecked."""
    from imgsearch.indexer.folder.validate import ManifestShapeError, check_manifest_shape

    manifest = {"backbone": {"name": "/models/dinov2", "preset": preset}, "dim": 32, "count": 0, "shards": []}
    with pytest.raises(ManifestShapeError, match=message):
        check_manifest_shape(manifest)
    check_manifest_shape(dict(manifest, backbone={"name": "/models/dinov2", "preset": {"sha256": "ab"}}))


def test_the_folder_digest_covers_every_file_and_its_name(tmp_path):
    (tmp_path / "a.json").write_text("1")
    first = hub.folder_digest(tmp_path)
    (tmp_path / "a.json").write_text("2")
    assert hub.folder_digest(tmp_path) != first
    (tmp_path / "a.json").write_text("1")
    assert hub.folder_digest(tmp_path) == first
    (tmp_path / "a.json").rename(tmp_path / "b.json")
    assert hub.folder_digest(tmp_path) != first
    # a download cache folder: only the encoder's files count (a tokenizer fetched later changes nothing)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.weights.h5").write_bytes(b"w")
    downloaded = hub.folder_digest(tmp_path, downloaded=True)
    (tmp_path / "tokenizer.json").write_text("{}")
    assert hub.folder_digest(tmp_path, downloaded=True) == downloaded
    (tmp_path / "model.weights.h5").write_bytes(b"v")
    assert hub.folder_digest(tmp_path, downloaded=True) != downloaded


# ---------------------------------------------------------------- the tiny DINOv2 (TensorFlow: slow)


def _reference(folder: Path, pixels: np.ndarray) -> np.ndarray:
    """The class token straight from keras_hub: its backbone and image converter, loaded from the preset."""
    import keras_hub

    model = keras_hub.models.Backbone.from_preset(str(folder))
    converter = keras_hub.layers.ImageConverter.from_preset(str(folder))
    tokens = np.asarray(model({"images": converter(pixels.astype(np.float32))}))  # (n, 1 + patches, D)
    assert tokens.shape == (len(pixels), 1 + (SIZE // 14) ** 2, DIM)
    return tokens[:, 0]


def test_the_tiny_dinov2_preset_embeds_unit_vectors_every_runtime_as_keras_does(tiny_dinov2, tmp_path):
    from imgsearch.indexer.model.embedder import Embedder
    from imgsearch.indexer.vectors import l2_normalize

    backbones.clear_loaded()
    bb = load_backbone(str(tiny_dinov2), cache_dir=tmp_path)
    assert (bb.name, bb.input_size, bb.dim) == (str(tiny_dinov2.resolve()), SIZE, DIM)
    described = bb.describe()
    assert described["preset"]["sha256"] == hub.folder_digest(tiny_dinov2)
    assert described["preset"]["pooling"] == CLASS_TOKEN and described["preset"]["class"] == "DINOV2Backbone"
    assert described["preset"]["scale"] == pytest.approx([1 / (255 * s) for s in (0.229, 0.224, 0.225)], rel=1e-6)
    assert "DINOV2ImageConverter" in described["preprocessing"]
    pixels = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    expected = l2_normalize(_reference(tiny_dinov2, pixels))
    for runtime in ("tf", "tflite"):
        embedder = Embedder(bb, batch_size=2, runtime=runtime, cache_dir=tmp_path)  # batches of 2, 2, 1
        # TFLite converts this model: no fallback to the tf.function taken
        assert embedder.runtime.startswith({"tf": "tf.function", "tflite": "tflite float32"}[runtime]), embedder.runtime
        got = embedder.embed(pixels)
        assert got.shape == (5, DIM) and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=runtime)
    assert len(list((tmp_path / "models").glob("hub-tiny-dinov2-*.tflite"))) == 1  # cached, keyed by the digest


def test_a_model_tflite_cannot_convert_runs_as_a_tf_function_and_says_so(tiny_dinov2, tmp_path, monkeypatch, caplog):
    from imgsearch.indexer.model import runtime

    def refuse(*args, **kwargs):
        raise RuntimeError("ConverterError: op not supported\nmore detail")

    monkeypatch.setattr(runtime, "_convert", refuse)
    backbones.clear_loaded()
    bb = load_backbone(str(tiny_dinov2), cache_dir=tmp_path)
    runner = runtime.make_runner(bb, "tflite", tmp_path)
    assert isinstance(runner, runtime.TFFunctionRunner)
    assert "TFLite conversion failed: RuntimeError: ConverterError: op not supported" in runner.description
    assert [r for r in caplog.records if "does not run as TFLite" in r.getMessage()]


@pytest.mark.slow  # imports keras_hub, so TensorFlow
def test_a_preset_name_that_cannot_be_downloaded_is_a_one_line_error(monkeypatch):
    from keras_hub.src.utils import preset_utils

    def offline(preset, path):  # what kagglehub raises with no network, made deterministic
        raise ConnectionError("HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded\nmore")

    monkeypatch.setattr(preset_utils, "get_file", offline)
    backbones.clear_loaded()
    with pytest.raises(PresetError, match="could not download the KerasHub preset 'dinov2_small'.*--backbone") as exc:
        load_backbone("dinov2_small")
    assert "save_to_preset" in _one_line(exc.value)


def test_a_preset_with_damaged_weights_is_a_clear_error(tiny_dinov2, tmp_path):
    broken = shutil.copytree(tiny_dinov2, tmp_path / "broken")
    weights = broken / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    backbones.clear_loaded()
    bb = load_backbone(str(broken), cache_dir=tmp_path)
    with pytest.raises(PresetError, match="cannot be loaded.*copy it again") as exc:
        bb.features
    _one_line(exc.value)


def _edited(src: Path, dest: Path) -> Path:
    """A mild edit: 80 % of the size, re-encoded at JPEG quality 70."""
    with Image.open(src) as img:
        img.convert("RGB").resize((img.width * 4 // 5, img.height * 4 // 5)).save(dest, quality=70)
    return dest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IMGSEARCH, *args], capture_output=True, text=True, timeout=300)


def test_index_and_search_by_preset_folder_find_an_image_and_its_edit_and_refuse_a_changed_preset(
        tiny_dinov2, tmp_path, photos_dir):
    preset = shutil.copytree(tiny_dinov2, tmp_path / "preset")  # this test changes it
    index = tmp_path / "idx"
    run = _cli("index", str(photos_dir), "--index", str(index), "--backbone", str(preset), "--no-progress")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((index / "manifest.json").read_text())
    recorded = manifest["backbone"]
    assert (recorded["name"], recorded["input_size"], manifest["dim"]) == (str(preset), SIZE, DIM)
    assert recorded["preset"]["sha256"] == hub.folder_digest(preset)
    assert recorded["preset"]["pooling"] == CLASS_TOKEN and "scale" in recorded["preprocessing"]
    assert "tflite" in manifest["runtime"]
    photos = sorted(photos_dir.glob("*.jpg"))
    edit = _edited(photos[0], tmp_path / "edited.jpg")
    for query, expected in [(photos[0], photos[0]), (photos[1], photos[1]), (edit, photos[0])]:
        found = _cli("search", "--index", str(index), "--json", "-k", "1", str(query))
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["results"][0]["path"] == str(expected), query

    write_tiny_dinov2(preset, seed=7)  # the same folder, other weights: another encoder under the same name
    refused = _cli("search", "--index", str(index), "--json", "-k", "1", str(photos[0]))
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "preset changed" in lines[0] and "SHA-256" in lines[0], refused.stderr
    again = _cli("index", str(photos_dir), "--index", str(index), "--no-progress")  # adding to it: refused too
    assert again.returncode == 1 and "preset changed" in again.stderr


def test_python_api_and_client_search_a_preset_index_and_refuse_a_changed_preset(tiny_dinov2, tmp_path, photos_dir):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    import requests

    from imgsearch.search.client import SearchClient
    from imgsearch.search.engine import SearchEngine
    from imgsearch.web.app import create_app
    from tests.helpers import LiveServer

    preset = shutil.copytree(tiny_dinov2, tmp_path / "preset")
    backbones.clear_loaded()
    config = IndexConfig(backbone=str(preset), cache_dir=tmp_path / "cache", progress=False, decode_workers=0)
    index_images([str(photos_dir)], tmp_path / "idx", config)
    photo = sorted(photos_dir.glob("*.jpg"))[2]
    assert SearchEngine.open(tmp_path / "idx", config=config).search_image(photo, k=1)[0].path == str(photo)
    server = LiveServer(create_app({"INDEX_DIR": str(tmp_path / "idx"), "WARM_UP": False}))
    try:  # the API and the Python client embed the query with the index's preset too
        found = SearchClient(server.url).search(photo, k=1)
        assert found.results[0].path == str(photo) and found.backbone == str(preset.resolve())
        # a class token is no average of cells: explaining a match is refused as a request, not a 500
        r = requests.post(f"{server.url}/api/explain", json={"query": {"id": 0}, "id": 1}, timeout=60)
        assert r.status_code == 400 and "cannot be explained cell by cell" in r.json()["error"]["message"], r.text
    finally:
        server.close()
    (preset / "metadata.json").write_text((preset / "metadata.json").read_text() + " ")  # any change to its files
    with pytest.raises(ImgsearchError, match="preset changed"):
        SearchEngine.open(tmp_path / "idx", config=config).search_image(photo, k=1)


@pytest.mark.slow  # runs TensorFlow
def test_a_feature_map_backbone_is_pooled_by_global_average_as_keras_computes_it(tmp_path):
    """Any keras_hub image backbone whose output is a feature map: a tiny ResNet (random weights) as a preset."""
    import keras
    import keras_hub

    from imgsearch.indexer.model.embedder import Embedder
    from imgsearch.indexer.vectors import l2_normalize

    keras.utils.set_random_seed(3)
    model = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block", image_shape=(64, 64, 3))
    converter = keras_hub.layers.ResNetImageConverter(image_size=(64, 64), scale=1 / 255)
    model.save_to_preset(str(tmp_path / "resnet"))
    converter.save_to_preset(str(tmp_path / "resnet"))
    backbones.clear_loaded()
    bb = load_backbone(str(tmp_path / "resnet"), cache_dir=tmp_path)
    assert (bb.input_size, bb.dim, bb.describe()["preset"]["pooling"]) == (64, 16, hub.GAP)
    pixels = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    expected = l2_normalize(np.asarray(model(converter(pixels.astype(np.float32)))).mean(axis=(1, 2)))
    for runtime in ("tf", "tflite"):
        np.testing.assert_allclose(Embedder(bb, runtime=runtime, cache_dir=tmp_path).embed(pixels), expected,
                                   atol=1e-4, err_msg=runtime)
    # a feature-map preset is explained cell by cell, and `explain --out` draws both images at its input size
    from click.testing import CliRunner
    from PIL import Image

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.web.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate(("red", "navy", "olive")):
        Image.new("RGB", (80, 60), colour).save(photos / f"{i}.png")
    index_images([photos], tmp_path / "idx", IndexConfig(backbone=str(tmp_path / "resnet"), cache_dir=tmp_path,
                                                         progress=False))
    out = tmp_path / "why.png"
    done = CliRunner().invoke(main, ["explain", "--index", str(tmp_path / "idx"), "0", "1", "--out", str(out)])
    assert done.exit_code == 0, (done.output, done.exception)
    assert Image.open(out).size[0] > 2 * 64  # the two squares, side by side, and the cells' scores


@pytest.mark.slow  # runs TensorFlow, in Spark's Python workers too
def test_spark_executors_embed_with_a_preset_folder_as_the_local_run_does(spark, tiny_dinov2, tmp_path, photos_dir):
    """A preset folder reachable from the executors (a shared path, or local mode): their rows equal a local
    run's, and the manifest records the same preset."""
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.indexer.spark.images import index_images_spark

    config = IndexConfig(backbone=str(tiny_dinov2), cache_dir=tmp_path / "cache", progress=False, decode_workers=0,
                         spark_master="local[2]", spark_task_size=4)
    index_images([photos_dir], tmp_path / "local", config)
    index_images_spark([photos_dir], tmp_path / "spark", config, spark=spark)
    rows, presets = {}, {}
    for name in ("local", "spark"):
        store = EmbeddingStore(tmp_path / name)
        manifest = store.read_manifest()
        table = store.read_table(manifest["shards"]).sort_by("path")
        rows[name] = (table.column("path").to_pylist(), embeddings_of(table))
        presets[name] = manifest["backbone"]["preset"]
    assert rows["local"][0] == rows["spark"][0] and len(rows["local"][0]) == 8
    assert np.abs(rows["local"][1] - rows["spark"][1]).max() < 1e-5
    assert presets["local"] == presets["spark"] and presets["spark"]["sha256"] == hub.folder_digest(tiny_dinov2)
