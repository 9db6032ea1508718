"""Inference runtimes for a backbone: TFLite (fastest exact on CPU) and a compiled tf.function.

Measured here (2 cores, batch 32): EfficientNet-Lite0 at 224 runs about
2.1x faster through TFLite float32 with XNNPACK (raw uint8 input, the
preprocessing inside the graph) than through a compiled ``tf.function``,
with the same embeddings (cosine 0.9999999).  Dynamic-range
int8 is slower and changes the embeddings, so it is not offered.  On a GPU the
``tf.function`` runs on the GPU, so that is the choice there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from indexer.atomic import atomic_write_bytes
from indexer.config import RUNTIMES
from indexer.errors import InvalidInputError
from indexer.model.backbones import Backbone

log = logging.getLogger(__name__)


def gpu_visible() -> bool:
    """Whether TensorFlow can use a GPU.  Without NVIDIA device files there is none, and
    TensorFlow is not imported just to learn that (TFLite then runs without it)."""
    import glob
    import sys

    if "tensorflow" not in sys.modules and not glob.glob("/dev/nvidia[0-9]*") and not glob.glob("/dev/dxg"):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_runtime(requested: str = "auto") -> str:
    """'auto' -> 'tf' when TensorFlow sees a GPU, else 'tflite'."""
    if requested not in RUNTIMES:
        raise InvalidInputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {requested!r}")
    if requested != "auto":
        return requested
    return "tf" if gpu_visible() else "tflite"


class TFFunctionRunner:
    """(n, S, S, 3) uint8 -> (n, D) float32 features through one compiled tf.function."""

    name = "tf.function"

    def __init__(self, backbone: Backbone):
        import tensorflow as tf

        size = backbone.input_size
        features, preprocess = backbone.features, backbone.preprocess

        @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)])
        def run(images):  # (n, S, S, 3) uint8
            x = preprocess(tf.cast(images, tf.float32))
            return features(x, training=False)  # (n, D)

        self._run = run
        self.description = "tf.function" + (" on GPU" if gpu_visible() else " on CPU")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._run(images).numpy()


def _tflite_cache_path(backbone: Backbone, cache_dir: Path) -> Path:
    # the flatbuffer format is stable across TensorFlow versions: the weights identify it
    key = hashlib.sha256(f"{backbone.name}|{backbone.weights_id}|tflite-f32-v2".encode()).hexdigest()[:16]
    return Path(cache_dir) / "models" / f"{backbone.name}-{key}.tflite"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:  # older installs: the interpreter that ships inside TensorFlow
        import warnings

        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return tf.lite.Interpreter, "tf.lite"


def tflite_model(backbone: Backbone, cache_dir: Path) -> bytes:
    """The backbone's features model as a float32 TFLite flatbuffer, converted once and cached."""
    path = _tflite_cache_path(backbone, cache_dir)
    if path.is_file():
        return path.read_bytes()
    import tensorflow as tf

    log.info("converting %s to TFLite (once; cached at %s)", backbone.name, path)
    model = backbone.features
    if backbone.name.startswith("efficientnet-lite"):
        import keras

        # raw uint8 pixels in, preprocessing inside the graph: one pass over the batch less
        images = keras.Input((backbone.input_size, backbone.input_size, 3), dtype="uint8")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(keras.ops.cast(images, "float32"))
        model = keras.Model(images, model(x))
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return data


class TFLiteRunner:
    """(n, S, S, 3) uint8 -> (n, D) float32 features through a TFLite interpreter (XNNPACK).

    The interpreter is not thread-safe: calls are serialised with a lock.
    """

    name = "tflite"

    def __init__(self, backbone: Backbone, cache_dir: Path, threads: int | None = None):
        interpreter_class, package = _interpreter_class()
        self.threads = threads or os.cpu_count() or 1
        self._interp = interpreter_class(model_content=tflite_model(backbone, cache_dir),
                                         num_threads=self.threads)
        details = self._interp.get_input_details()[0]
        self._input = details["index"]
        self._raw_input = details["dtype"] == np.uint8  # preprocessing is inside the flatbuffer
        self._output = self._interp.get_output_details()[0]["index"]
        self._batch = 0
        self._lock = threading.Lock()
        self._size = backbone.input_size
        self._prepare = backbone.preprocess_np  # the backbone's own preprocessing, in numpy
        self.description = f"tflite float32 ({package}, XNNPACK, {self.threads} threads)"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = images if self._raw_input else self._prepare(images)  # (n, S, S, 3)
        with self._lock:
            if len(x) != self._batch:
                self._interp.resize_tensor_input(self._input, [len(x), self._size, self._size, 3])
                self._interp.allocate_tensors()
                self._batch = len(x)
            self._interp.set_tensor(self._input, x)
            self._interp.invoke()
            return self._interp.get_tensor(self._output).copy()  # (n, D)


def make_runner(backbone: Backbone, runtime: str = "auto", cache_dir: Path | None = None,
                threads: int | None = None):
    from indexer.config import default_cache_dir

    chosen = resolve_runtime(runtime)
    if chosen == "tf":
        runner = TFFunctionRunner(backbone)
    else:
        runner = TFLiteRunner(backbone, Path(cache_dir) if cache_dir else default_cache_dir(), threads)
    log.info("inference runtime for %s: %s", backbone.name, runner.description)
    return runner
