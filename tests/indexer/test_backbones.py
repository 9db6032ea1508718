import numpy as np
import pytest

from imgsearch.indexer.model import backbones
from imgsearch.indexer.model.backbones import BACKBONES, BackboneError, load_backbone
from imgsearch.indexer.model.embedder import Embedder


def test_registry_lists_required_backbones():
    for name in ["efficientnet-lite0", "efficientnet-lite2", "resnet50", "inception_v3",
                 "mobilenet_v2", "efficientnet_b0", "vgg16"]:
        assert name in BACKBONES
    with pytest.raises(BackboneError, match="unknown backbone 'resnet51'.*efficientnet-lite0"):
        load_backbone("resnet51")


def test_converted_model_is_cached_and_reused(tmp_path, monkeypatch, lite0):
    backbones.clear_loaded()
    first = load_backbone("efficientnet-lite0", cache_dir=tmp_path)
    assert not (tmp_path / "models").exists()  # nothing is built until the Keras model is needed
    first.features
    cached = list((tmp_path / "models").glob("efficientnet-lite0-*.keras"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns

    calls = []
    import imgsearch.indexer.model.efficientnet_lite as lite

    real_build = lite.build_efficientnet_lite
    monkeypatch.setattr(lite, "build_efficientnet_lite", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    backbones.clear_loaded()
    second = load_backbone("efficientnet-lite0", cache_dir=tmp_path)
    second.features
    assert calls == []  # loaded from the cache, not rebuilt
    assert cached[0].stat().st_mtime_ns == stamp
    x = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(Embedder(first, runtime="tf").embed(x), Embedder(second, runtime="tf").embed(x),
                               atol=1e-6)
    np.testing.assert_allclose(Embedder(lite0, runtime="tf").embed(x), Embedder(second, runtime="tf").embed(x),
                               atol=1e-6)


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
def test_damaged_cache_entry_is_rebuilt(tmp_path):
    backbones.clear_loaded()
    load_backbone("efficientnet-lite0", cache_dir=tmp_path).features
    (cached,) = (tmp_path / "models").glob("*.keras")
    cached.write_bytes(b"garbage")
    backbones.clear_loaded()
    bb = load_backbone("efficientnet-lite0", cache_dir=tmp_path)
    assert bb.features.output.shape[-1] == 1280
    assert cached.stat().st_size > 1_000_000


def test_embeddings_are_unit_length_float32(embedder):
    x = np.random.default_rng(1).integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    v = embedder.embed(x)
    assert v.shape == (5, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # batching does not change results
    np.testing.assert_allclose(Embedder(embedder.backbone, batch_size=2).embed(x), v, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(n, 224, 224, 3\)"):
        embedder.embed(x[:, :100])


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
@pytest.mark.timeout(120)
def test_keras_backbone_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached weights
    backbones.clear_loaded()
    try:
        load_backbone("mobilenet_v2")
    except BackboneError as exc:
        msg = str(exc)
        assert "offline" in msg and "--weights" in msg and "mobilenet_v2" in msg
    else:
        pytest.skip("this machine can download Keras weights; the offline path is not exercised")


@pytest.mark.slow
def test_keras_backbone_with_local_weights_file(tmp_path):
    import keras

    backbones.clear_loaded()
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, pooling="avg",
                                               input_shape=(224, 224, 3))
    weights = tmp_path / "mobilenet_v2.weights.h5"
    reference.save_weights(weights)
    bb = load_backbone("mobilenet_v2", weights=str(weights))
    assert bb.weights == str(weights) and bb.dim == 1280
    x = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    expected = reference(keras.applications.mobilenet_v2.preprocess_input(x.astype(np.float32))).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(Embedder(bb).embed(x), expected, atol=1e-5)

    with pytest.raises(BackboneError, match="weights file not found"):
        load_backbone("mobilenet_v2", weights=str(tmp_path / "missing.h5"))


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite2"])
def test_tflite_and_tf_function_give_the_same_embeddings(name, photos_dir):
    from imgsearch.indexer.inputs.images import decode_image

    bb = load_backbone(name)
    images = np.stack([decode_image(p, bb.input_size).array for p in sorted(photos_dir.glob("*.jpg"))])
    fast, graph = Embedder(bb, runtime="tflite"), Embedder(bb, runtime="tf")
    assert fast.runtime.startswith("tflite float32") and graph.runtime.startswith("tf.function")
    a, b = fast.embed(images), graph.embed(images)  # (8, 1280) each
    cos = (a * b).sum(axis=1)
    assert cos.min() > 1 - 1e-4, cos
    # a different batch size (a resized interpreter) gives the same vectors
    np.testing.assert_allclose(Embedder(bb, batch_size=3, runtime="tflite").embed(images), a, atol=1e-5)


def test_auto_runtime_is_tflite_without_gpu():
    from imgsearch.indexer.model.runtime import resolve_runtime

    assert resolve_runtime("auto") == "tflite"  # no GPU is visible on these machines
    with pytest.raises(ValueError, match="runtime must be one of"):
        resolve_runtime("onnx")


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
def test_auto_runtime_picks_tf_function_when_a_gpu_is_visible(monkeypatch):
    import tensorflow as tf

    from imgsearch.indexer.model.runtime import resolve_runtime

    # the one thing mocked in this suite: a GPU, which these machines do not have
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else [])
    assert resolve_runtime("auto") == "tf"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_indexing_and_search_with_a_cached_tflite_model_never_import_tensorflow(tmp_path, photos_dir, lite0):
    import subprocess
    import sys

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.engine import SearchEngine

    # The very calls the subprocess makes, here first: they prepare whatever model they ask for (precision,
    # calibration, outputs) through the product's own path, whatever the defaults are and whatever ran before.
    index_images([photos_dir], tmp_path / "warm", IndexConfig(progress=False))
    SearchEngine.open(tmp_path / "warm").search_image(photos_dir / "coffee.jpg", 1)
    code = (
        "import sys\n"
        "from imgsearch.indexer.config import IndexConfig\nfrom imgsearch.indexer.run.pipeline import index_images\n"
        "from imgsearch.search.engine import SearchEngine\n"
        "if __name__ == '__main__':\n"
        f"    s = index_images([{str(photos_dir)!r}], {str(tmp_path / 'idx')!r}, IndexConfig(progress=False))\n"
        f"    hit = SearchEngine.open({str(tmp_path / 'idx')!r}).search_image({str(photos_dir / 'coffee.jpg')!r}, 1)[0]\n"
        "    print(s.added, hit.path.endswith('coffee.jpg'), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    script = tmp_path / "run.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["8", "True", "False", "False"]
