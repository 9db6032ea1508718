"""Inference runtimes for a backbone: TFLite (fastest exact on CPU) and a compiled tf.function.

Measured here (2 cores, batch 32): EfficientNet-Lite0 at 224 runs about
2.1x faster through TFLite float32 with XNNPACK (raw uint8 input, the
preprocessing inside the graph) than through a compiled ``tf.function``,
with the same embeddings (cosine 0.9999999).  Dynamic-range
int8 is slower and changes the embeddings, so it is not offered.  On a GPU the
``tf.function`` runs on the GPU, so that is the choice there.

``precision="int8"`` runs a full-integer TFLite model of the EfficientNet-Lite
backbones instead (issue 15: about 3x the float32 throughput on a CPU with
VNNI): uint8 pixels in, as the float32 model takes them, the preprocessing
folded into the graph, float features out.  Its activation ranges come from a
calibration set (``indexer/inputs/calibration.py``) the caller passes; the
set's identity is part of the cached model's key.  The embeddings differ from
float32's (cosine median about 0.99), so an index is built and queried in one
precision (the manifest records it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from imgsearch.indexer.atomic import atomic_write_bytes
from imgsearch.indexer.config import RUNTIMES, check_precision
from imgsearch.indexer.errors import ImgsearchError, InvalidInputError
from imgsearch.indexer.model.backbones import Backbone, NotExplainableError
from imgsearch.indexer.progress import step
from imgsearch.indexer.quiet import captured, libraries_log

log = logging.getLogger(__name__)


def gpu_visible() -> bool:
    """Whether TensorFlow can use a GPU.  Without NVIDIA device files there is none, and
    TensorFlow is not imported just to learn that (TFLite then runs without it)."""
    import glob
    import sys

    if "tensorflow" not in sys.modules and not glob.glob("/dev/nvidia[0-9]*") and not glob.glob("/dev/dxg"):
        return False
    from imgsearch.indexer.config import default_cache_dir

    with captured(libraries_log(default_cache_dir()), "looking for a GPU"):
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))


# about how long converting a model takes on a laptop's CPU, said before it starts
PREPARE_SECONDS = {"float32": 20, "int8": 40}


def resolve_runtime(requested: str = "auto", precision: str = "float32") -> str:
    """'auto' -> 'tf' when TensorFlow sees a GPU, else 'tflite'; int8 runs only on TFLite."""
    if requested not in RUNTIMES:
        raise InvalidInputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {requested!r}")
    check_precision(precision, requested)
    if requested != "auto":
        return requested
    return "tf" if precision == "float32" and gpu_visible() else "tflite"


OUTPUTS = ("features", "map")


def _check_outputs(outputs: str) -> None:
    if outputs not in OUTPUTS:
        raise InvalidInputError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")


def _keras_graph(backbone: Backbone, outputs: str):
    """The Keras model a runner runs: the plain features model that indexing and search use, or (``"map"``)
    the explaining model, whose outputs are the same pooled features and the feature map they pool."""
    _check_outputs(outputs)
    return backbone.features if outputs == "features" else backbone.features_and_map


class TFFunctionRunner:
    """(n, S, S, 3) uint8 -> (n, D) float32 features through one compiled tf.function.

    ``outputs="map"``: -> ((n, D) features, (n, h, w, D) feature map), from the explaining model.
    """

    name = "tf.function"

    def __init__(self, backbone: Backbone, outputs: str = "features"):
        from imgsearch.indexer.config import default_cache_dir

        with captured(libraries_log(default_cache_dir()), f"building the tf.function of {backbone.name}"):
            self._build(backbone, outputs)

    def _build(self, backbone: Backbone, outputs: str) -> None:
        import tensorflow as tf

        size = backbone.input_size
        features, preprocess = _keras_graph(backbone, outputs), backbone.preprocess
        self.outputs = outputs

        @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)])
        def run(images):  # (n, S, S, 3) uint8
            x = preprocess(tf.cast(images, tf.float32))
            return features(x, training=False)  # (n, D), or [(n, D), (n, h, w, D)]

        self._run = run
        self.description = "tf.function" + (" on GPU" if gpu_visible() else " on CPU")

    def __call__(self, images: np.ndarray):
        out = self._run(images)
        if self.outputs == "map":
            return out[0].numpy(), out[1].numpy()  # (n, D), (n, h, w, D)
        return out.numpy()


def _tflite_cache_path(backbone: Backbone, cache_dir: Path, precision: str = "float32",
                       calibration=None, outputs: str = "features") -> Path:
    # the flatbuffer format is stable across TensorFlow versions: the weights identify it (float32), the
    # weights and the calibration set (int8); the float32 name is the one earlier releases cached under.
    # The explaining model (outputs="map") is another flatbuffer under its own key: the plain one is untouched
    # a KerasHub preset's name may be a folder's path: the file name keeps its last part, the key its digest
    _check_outputs(outputs)
    extra, tag = ("", "") if outputs == "features" else (f"|outputs={outputs}", f"-{outputs}")
    stem = backbone.name if backbone.name.replace("-", "").replace("_", "").isalnum() else \
        "hub-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(backbone.name).name)[-40:]
    if precision == "float32":
        key = hashlib.sha256(f"{backbone.name}|{backbone.weights_id}|tflite-f32-v2{extra}".encode()).hexdigest()[:16]
        return Path(cache_dir) / "models" / f"{stem}{tag}-{key}.tflite"
    ident = json.dumps(_calibration(calibration, precision).identity(), sort_keys=True)
    key = hashlib.sha256(
        f"{backbone.name}|{backbone.weights_id}|tflite-int8-v1|{ident}{extra}".encode()).hexdigest()[:16]
    return Path(cache_dir) / "models" / f"{stem}-int8{tag}-{key}.tflite"


def _calibration(calibration, precision: str):
    if calibration is None:
        raise InvalidInputError(f"precision {precision} needs a calibration set (indexer.inputs.calibration)")
    return calibration


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:  # older installs: the interpreter that ships inside TensorFlow
        import warnings

        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return tf.lite.Interpreter, "tf.lite"


def tflite_model(backbone: Backbone, cache_dir: Path, precision: str = "float32", calibration=None,
                 outputs: str = "features") -> bytes:
    """The backbone's features model as a TFLite flatbuffer, converted once and cached.

    ``precision="int8"``: the full-integer model calibrated on ``calibration``
    (an object with ``identity()`` and ``images(size)``).  ``outputs="map"``: the
    explaining model, with the feature map as a second output.
    """
    check_precision(precision)
    path = _tflite_cache_path(backbone, cache_dir, precision, calibration, outputs)
    if path.is_file():
        return path.read_bytes()
    what = ", its explaining model," if outputs == "map" else ""
    with captured(libraries_log(cache_dir), f"preparing {path.name}"), \
            step(f"preparing {backbone.name}{what} for this CPU ({precision} TFLite), once: about "
                 f"{PREPARE_SECONDS[precision]} s; cached in {path.parent}", say=True):
        data = _convert(backbone, precision, calibration, outputs, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return data


def _convert(backbone: Backbone, precision: str, calibration, outputs: str, path: Path) -> bytes:
    if precision == "int8":
        return _convert_int8(backbone, calibration, outputs)
    import tensorflow as tf

    model = _keras_graph(backbone, outputs)
    if backbone.name.startswith("efficientnet-lite"):
        import keras

        # raw uint8 pixels in, preprocessing inside the graph: one pass over the batch less
        images = keras.Input((backbone.input_size, backbone.input_size, 3), dtype="uint8")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(keras.ops.cast(images, "float32"))
        model = keras.Model(images, model(x))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def default_precision(backbone: Backbone, runtime: str = "auto", cache_dir: Path | None = None,
                      calibration=None) -> tuple[str, str]:
    """(precision, reason) of a new index when none is asked for; the manifest records both.

    int8 only where it was measured to keep retrieval quality (the efficientnet-lite backbones, within
    0.01 of float32 on every row of scripts/eval_precision.py's table) and where it is measurably faster
    on this CPU (``precision_choice``: an x86 CPU without VNNI or AMX gets float32 from its flags; elsewhere
    both models are timed once, cached).  float32 for the GPU's
    tf.function (``runtime="tf"``, or ``"auto"`` with a GPU visible) and for the other backbones.
    An existing index keeps its own precision whatever this says.
    """
    from imgsearch.indexer.config import default_cache_dir
    from imgsearch.indexer.model.precision_choice import measured_precision

    if not backbone.name.startswith("efficientnet-lite") or getattr(backbone, "runner", None) is not None:
        return "float32", f"float32: int8 is offered for the efficientnet-lite backbones, not {backbone.name}"
    if runtime == "tf":
        return "float32", "float32: the tf.function runtime runs float32 only"
    if runtime == "auto" and gpu_visible():
        return "float32", "float32: a GPU runs the float32 tf.function"
    cache_dir, threads = Path(cache_dir) if cache_dir else default_cache_dir(), os.cpu_count() or 1
    calibration = _calibration(calibration, "int8")
    return measured_precision(backbone, cache_dir, lambda precision: TFLiteRunner(
        backbone, cache_dir, threads, precision, calibration if precision == "int8" else None), threads)


def check_int8_backbone(name: str) -> None:
    """int8 is built for the EfficientNet-Lite backbones (quantisation-friendly: ReLU6, no squeeze-excitation)."""
    if not name.startswith("efficientnet-lite"):
        raise InvalidInputError(f"precision int8 is offered for the efficientnet-lite backbones, not {name}: "
                                "use --precision float32")


def _convert_int8(backbone: Backbone, calibration, outputs: str = "features") -> bytes:
    import keras
    import tensorflow as tf

    check_int8_backbone(backbone.name)
    size = backbone.input_size
    pixels = calibration.images(size)  # (n, S, S, 3) uint8, decoded as indexing decodes
    log.info("converting %s to full-integer int8 TFLite, calibrated on %d images (once; cached)",
             backbone.name, len(pixels))
    # raw pixels in [0, 255] as the float32 model takes them, with (x/255 - 0.5)/0.5 inside the graph; the
    # uint8 input the converter makes then holds the pixels themselves (scale 1, zero point 0; TFLiteRunner checks it)
    images = keras.Input((size, size, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    model = keras.Model(images, _keras_graph(backbone, outputs)(x))

    def representative():
        for image in pixels:
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return converter.convert()


class TFLiteRunner:
    """(n, S, S, 3) uint8 -> (n, D) float32 features through a TFLite interpreter (XNNPACK).

    ``outputs="map"``: -> ((n, D) features, (n, h, w, D) feature map), from the explaining model.
    The interpreter is not thread-safe: calls are serialised with a lock.
    """

    name = "tflite"

    def __init__(self, backbone: Backbone, cache_dir: Path, threads: int | None = None,
                 precision: str = "float32", calibration=None, outputs: str = "features"):
        interpreter_class, package = _interpreter_class()
        self.threads = threads or os.cpu_count() or 1
        self.precision = precision
        self.outputs = outputs
        content = tflite_model(backbone, cache_dir, precision, calibration, outputs)
        # the TFLite runtime says "Created TensorFlow Lite XNNPACK delegate for CPU." on the first allocation
        with captured(libraries_log(cache_dir), f"loading the {precision} model of {backbone.name}"):
            self._interp = interpreter_class(model_content=content, num_threads=self.threads)
            self._interp.allocate_tensors()
        details = self._interp.get_input_details()[0]
        self._input = details["index"]
        self._raw_input = details["dtype"] == np.uint8  # preprocessing is inside the flatbuffer
        scale, zero = details.get("quantization", (0.0, 0))
        if self._raw_input and scale and (abs(scale - 1.0) > 1e-6 or zero != 0):
            # the int8 model's uint8 input must hold the pixels themselves, as the float32 model's does
            raise InvalidInputError(f"the {precision} model of {backbone.name} quantises its input with scale "
                                    f"{scale}, zero point {zero}, not the raw pixels: delete it from {cache_dir}")
        # by rank, not position: the converter does not keep the Keras outputs' order
        ranked = sorted(self._interp.get_output_details(), key=lambda d: len(d["shape"]))
        self._output = ranked[0]["index"]  # (n, D)
        self._map_output = ranked[-1]["index"] if outputs == "map" else None  # (n, h, w, D)
        self._batch = 0
        self._lock = threading.Lock()
        self._size = backbone.input_size
        self._prepare = backbone.preprocess_np  # the backbone's own preprocessing, in numpy
        self.description = f"tflite {precision} ({package}, XNNPACK, {self.threads} threads)"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = images if self._raw_input else self._prepare(images)  # (n, S, S, 3)
        with self._lock:
            if len(x) != self._batch:
                self._interp.resize_tensor_input(self._input, [len(x), self._size, self._size, 3])
                self._interp.allocate_tensors()
                self._batch = len(x)
            self._interp.set_tensor(self._input, x)
            self._interp.invoke()
            if self._map_output is not None:
                return self._interp.get_tensor(self._output).copy(), self._interp.get_tensor(self._map_output).copy()
            return self._interp.get_tensor(self._output).copy()  # (n, D)


def make_runner(backbone: Backbone, runtime: str = "auto", cache_dir: Path | None = None,
                threads: int | None = None, precision: str = "float32", calibration=None,
                outputs: str = "features"):
    from imgsearch.indexer.config import default_cache_dir

    if backbone.runner is not None:  # a backbone that runs itself: its features, float32, whatever the runtime
        if precision != "float32" or outputs != "features":
            raise InvalidInputError(f"{backbone.name} runs its float32 features only, not {precision} "
                                    f"{outputs}: it has no Keras graph to convert")
        return backbone.runner
    if backbone.onnx is not None:  # an ONNX model file: onnxruntime, float32 features
        return _onnx_runner(backbone, runtime, threads, precision, outputs)
    chosen = resolve_runtime(runtime, precision)
    if chosen == "tf":
        runner = TFFunctionRunner(backbone, outputs)
    elif "preset" in backbone.extra:  # a KerasHub encoder: TFLite where its converter handles the model
        runner = _preset_runner(backbone, Path(cache_dir) if cache_dir else default_cache_dir(), threads,
                                precision, outputs)
    else:
        runner = TFLiteRunner(backbone, Path(cache_dir) if cache_dir else default_cache_dir(), threads,
                              precision, calibration, outputs)
    log.info("inference runtime for %s: %s", backbone.name, runner.description)
    return runner


def _preset_runner(backbone: Backbone, cache_dir: Path, threads: int | None, precision: str, outputs: str):
    """TFLite float32 for a KerasHub encoder when its model converts (and runs); else the tf.function, said
    once in the log and in the runner's description (the manifest's ``runtime``)."""
    try:
        return TFLiteRunner(backbone, cache_dir, threads, precision, None, outputs)
    except ImgsearchError:
        raise  # not the converter's refusal: what the model cannot do at all (explain a class token, say)
    except Exception as exc:  # the converter's or the interpreter's refusal, whatever it raised
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        log.warning("%s does not run as TFLite (%s): using the tf.function", backbone.name, why)
        runner = TFFunctionRunner(backbone, outputs)
        runner.description += f" (TFLite conversion failed: {why})"
        return runner


def _onnx_runner(backbone: Backbone, runtime: str, threads: int | None, precision: str, outputs: str):
    from imgsearch.indexer.model.onnx_encoder import OnnxRunner

    if runtime not in RUNTIMES:
        raise InvalidInputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision != "float32":
        raise InvalidInputError(f"{backbone.name} is an ONNX model: it runs in float32 only, not {precision}; "
                                "use --precision float32")
    if outputs != "features":
        raise NotExplainableError(f"{backbone.name} is an ONNX model, run by onnxruntime: its matches cannot be "
                                  "explained cell by cell (explain works with the CNNs)")
    runner = OnnxRunner(backbone.onnx, runtime, threads)
    log.info("inference runtime for %s: %s", backbone.name, runner.description)
    return runner
