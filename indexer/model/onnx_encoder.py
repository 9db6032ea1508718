"""ONNX image encoders (issue 33, item 2): a model file of the user's own, run by onnxruntime, with a declared
spec (indexer/model/onnx_spec.py) for its preprocessing, the output to use and its pooling.

``--backbone onnx:FILE.onnx``.  The backbone's name is ``onnx:`` and the file's absolute path: search finds the
model there again, as it finds a KerasHub preset folder.  Its identity is the SHA-256 of the file, recorded in
the manifest with the normalised spec, so search embeds exactly as indexing did and an index whose model file
changed is refused.  Opening a model checks the spec against it (its input's layout and size, the output's name
or position, its shape for the pooling) and learns the embedding's dimension by running it once on a black
image.  The embedder L2-normalises the pooled output as it does the CNNs'.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch.indexer.errors import ImgsearchError, InvalidInputError, MissingDependencyError
from imgsearch.indexer.model.onnx_spec import SPEC_SUFFIX, OnnxSpec, read_spec

log = logging.getLogger(__name__)

ONNX_PREFIX = "onnx:"
ONNX_EXTRA = "pip install 'imgsearch[onnx]'"
CUDA = "CUDAExecutionProvider"


class OnnxModelError(ImgsearchError, RuntimeError):
    """An ONNX model file is missing, damaged, or does not fit its spec; the message says what to change."""


def is_onnx(name: str) -> bool:
    return name.startswith(ONNX_PREFIX)


def model_path(name: str) -> Path:
    """The model file a backbone name ``onnx:FILE`` means, absolute."""
    if not is_onnx(name) or not name[len(ONNX_PREFIX):].strip():
        raise InvalidInputError(f"an ONNX backbone is spelt onnx:FILE.onnx, got {name!r}")
    # absolute, links kept: "a link to it there" must keep working after the file it points to moves
    return Path(os.path.abspath(Path(name[len(ONNX_PREFIX):]).expanduser()))


def onnx_name(name: str) -> str:
    """The name the manifest records: ``onnx:`` and the absolute path (a relative one would move with the cwd)."""
    return ONNX_PREFIX + str(model_path(name))


def file_stamp(name: str, spec_value=None) -> tuple | None:
    """The sizes and modification times of the model file and of its spec file (the one given, or the one
    beside the model): either changed, the model is opened anew."""
    try:
        model = model_path(name)
    except InvalidInputError:
        return None
    spec = Path(spec_value).expanduser() if isinstance(spec_value, (str, Path)) and \
        not str(spec_value).lstrip().startswith("{") else model.with_name(model.name + SPEC_SUFFIX)
    stamps = []
    for path in (model, spec):
        try:
            stat = path.stat()
            stamps.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(f"ONNX encoders run with onnxruntime: {ONNX_EXTRA}") from exc
    return onnxruntime


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _session(path: Path, providers: list[str], threads: int | None):
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not the user's
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...) for a bad file
        raise OnnxModelError(f"the ONNX model file {path} cannot be loaded ({_first_line(exc)}): export it "
                             "again, or copy it again") from None


@dataclass
class OnnxModel:
    """An opened ONNX encoder: what indexing and the manifest need, and a session to run it."""

    name: str  # onnx:/abs/path
    path: Path
    digest: str
    spec: OnnxSpec
    dim: int
    input_name: str
    output_name: str
    batch: int | None  # a model exported with a fixed batch size runs in chunks of it
    session: object = field(repr=False)

    def describe(self) -> dict:
        """The manifest's ``backbone.onnx``."""
        return {"file": str(self.path), "sha256": self.digest, "spec": self.spec.normalised(),
                "output": self.output_name, "input": self.input_name}

    def preprocess_np(self, images: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 RGB -> the model's input, float32, in its layout."""
        x = np.asarray(images, np.float32)
        if self.spec.channels == "BGR":
            x = x[..., ::-1]
        x = x * np.asarray(self.spec.scale, np.float32) + np.asarray(self.spec.offset, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.spec.layout == "NCHW" else x)

    def pool(self, out: np.ndarray) -> np.ndarray:
        """The chosen output -> (n, D) float32, by the spec's pooling."""
        out = np.asarray(out, np.float32)
        if self.spec.pooling == "gap":
            return out.mean(axis=(2, 3) if self.spec.layout == "NCHW" else (1, 2))
        if self.spec.pooling == "class-token":
            return out[:, 0, :]
        return out.reshape(len(out), -1) if out.ndim == 4 and out.shape[2:] == (1, 1) else out

    def run(self, images: np.ndarray, session=None) -> np.ndarray:
        """(n, S, S, 3) uint8 -> (n, D) float32 pooled features, not normalised."""
        session = session or self.session
        x = self.preprocess_np(images)
        step = self.batch or len(x)
        parts = [session.run([self.output_name], {self.input_name: x[i:i + step]})[0]
                 for i in range(0, len(x), step)]
        return self.pool(np.concatenate(parts))


def _check_input(model_input, spec: OnnxSpec, path: Path) -> int | None:
    shape = list(model_input.shape)
    if "float" not in model_input.type:
        raise OnnxModelError(f"the ONNX model {path} takes {model_input.type} input {model_input.name!r}: "
                             "imgsearch feeds float32 pixels; export the model with a float32 image input")
    if len(shape) != 4:
        raise OnnxModelError(f"the ONNX model {path} takes input {model_input.name!r} of shape {shape}, not a "
                             "batch of images (4 dimensions): name the image input with the spec's 'input'")
    channels, hw = (shape[1], shape[2:]) if spec.layout == "NCHW" else (shape[3], shape[1:3])
    other = "NHWC" if spec.layout == "NCHW" else "NCHW"
    if isinstance(channels, int) and channels != 3:
        raise OnnxModelError(f"the ONNX model {path} takes input of shape {shape}: with layout {spec.layout} "
                             f"it would have {channels} channels, not 3; set \"layout\": \"{other}\" in the spec")
    fixed = [d for d in hw if isinstance(d, int)]
    if any(d != spec.input_size for d in fixed):
        raise OnnxModelError(f"the ONNX model {path} takes input of shape {shape}, not {spec.input_size} x "
                             f"{spec.input_size} in layout {spec.layout}: set \"input_size\" to its size, or "
                             f"\"layout\": \"{other}\" in the spec")
    return shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None


def _pick_output(outputs, spec: OnnxSpec, path: Path):
    names = [o.name for o in outputs]
    if isinstance(spec.output, int):
        if spec.output >= len(outputs):
            raise OnnxModelError(f"the ONNX model {path} has {len(outputs)} output(s) ({', '.join(names)}), no "
                                 f"output {spec.output}: set \"output\" to one of them, by name or position")
        chosen = outputs[spec.output]
    elif spec.output not in names:
        raise OnnxModelError(f"the ONNX model {path} has no output {spec.output!r}: its outputs are "
                             f"{', '.join(names)}; set \"output\" to one of them")
    else:
        chosen = outputs[names.index(spec.output)]
    if not chosen.type.startswith("tensor("):  # a sequence or a map (a classifier's ZipMap, say): no embedding
        raise OnnxModelError(f"the ONNX model {path}'s output {chosen.name!r} is a {chosen.type}, not a tensor: "
                             f"set \"output\" to a tensor output ({', '.join(names)})")
    return chosen


_EXPECTED = {"none": "(n, D)", "gap": "a feature map (n, h, w, C) or (n, C, h, w)", "class-token": "tokens (n, T, D)"}


def _dim(model: OnnxModel, path: Path) -> int:
    """Run the model once on a black image: checks the whole chain and gives the pooled dimension."""
    size = model.spec.input_size
    try:
        raw = model.session.run([model.output_name], {model.input_name: model.preprocess_np(
            np.zeros((model.batch or 1, size, size, 3), np.uint8))})[0]
    except Exception as exc:
        raise OnnxModelError(f"the ONNX model {path} does not run on a {size} x {size} {model.spec.layout} "
                             f"image ({_first_line(exc)}): check the spec's input_size and layout") from None
    ranks = {"none": (2,), "gap": (4,), "class-token": (3,)}[model.spec.pooling]
    if raw.ndim not in ranks and not (model.spec.pooling == "none" and raw.ndim == 4 and raw.shape[2:] == (1, 1)):
        suggestion = {2: "none", 3: "class-token", 4: "gap"}.get(raw.ndim)
        raise OnnxModelError(f"the ONNX model {path}'s output {model.output_name!r} has shape {list(raw.shape)}, "
                             f"not {_EXPECTED[model.spec.pooling]} for pooling {model.spec.pooling!r}"
                             + (f": set \"pooling\": \"{suggestion}\"" if suggestion else
                                ": choose another output"))
    return int(model.pool(raw).shape[-1])


def open_model(name: str, spec_value=None, providers: list[str] | None = None, threads: int | None = None) \
        -> OnnxModel:
    """Open ``onnx:FILE`` with its spec (``onnx_spec.read_spec``'s ``value``): checked against the model."""
    path = model_path(name)
    if not path.is_file():
        raise OnnxModelError(f"the ONNX model file {path} does not exist: pass the path of a .onnx file (an "
                             "index keeps the path it was built with: put the file back there, or a link to it)")
    spec = read_spec(spec_value, path)
    session = _session(path, providers or ["CPUExecutionProvider"], threads)
    inputs = session.get_inputs()
    if spec.input is None and len(inputs) != 1:
        raise OnnxModelError(f"the ONNX model {path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)})"
                             ": name the image input with the spec's 'input'")
    by_name = {i.name: i for i in inputs}
    if spec.input is not None and spec.input not in by_name:
        raise OnnxModelError(f"the ONNX model {path} has no input {spec.input!r}: its inputs are "
                             f"{', '.join(by_name)}; set \"input\" to one of them")
    model_input = by_name[spec.input] if spec.input else inputs[0]
    batch = _check_input(model_input, spec, path)
    output = _pick_output(session.get_outputs(), spec, path)
    model = OnnxModel(onnx_name(name), path, file_digest(path), spec, 0, model_input.name, output.name,
                      batch, session)
    model.dim = _dim(model, path)
    return model


def choose_providers(runtime: str) -> list[str]:
    """onnxruntime's providers for a runtime: "tf" (the GPU runtime) asks for CUDA and fails without it;
    "auto" takes CUDA where onnxruntime offers it (onnxruntime-gpu); "tflite" and otherwise, the CPU."""
    available = require_onnxruntime().get_available_providers()
    if runtime == "tf":
        if CUDA not in available:
            raise InvalidInputError(f"--runtime tf runs an ONNX model on the GPU through onnxruntime's "
                                    f"{CUDA}, which this install lacks (it has {', '.join(available)}): "
                                    "pip install onnxruntime-gpu, or use --runtime auto")
        return [CUDA, "CPUExecutionProvider"]
    if runtime == "auto" and CUDA in available:
        return [CUDA, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRunner:
    """(n, S, S, 3) uint8 -> (n, D) float32 features through an onnxruntime session of the model."""

    name = "onnxruntime"

    def __init__(self, model: OnnxModel, runtime: str = "auto", threads: int | None = None):
        providers = choose_providers(runtime)
        self._model = model
        # the session opened to check the model runs on the CPU with onnxruntime's own thread count: reused
        reuse = providers == ["CPUExecutionProvider"] and not threads
        self._session = model.session if reuse else _session(model.path, providers, threads)
        self._lock = threading.Lock()
        used = self._session.get_providers()[0]
        self.description = f"onnxruntime {require_onnxruntime().__version__} ({used}" + \
            (f", {threads} threads)" if threads else ")")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._model.run(images, self._session)
