"""The declared spec of an ONNX image encoder (issue 33, item 2): what imgsearch must do to an image before the
model and to the model's output after it.  Read and checked once, here, without onnxruntime; normalised so
that two spellings of one spec record the same thing in the manifest.

A spec is a JSON object (a file, a JSON string, or a dict from Python)::

    {"input_size": 224,                  # square side in pixels, or [h, w] with h == w
     "layout": "NCHW",                   # the model's input: NCHW (PyTorch exports) or NHWC (TensorFlow ones)
     "mean": [0.485, 0.456, 0.406],      # per channel, on RGB scaled to [0, 1]: (x / 255 - mean) / std
     "std": [0.229, 0.224, 0.225],       #   (or "scale"/"offset" on RGB in [0, 255]: x * scale + offset)
     "channels": "RGB",                  # or "BGR" (Caffe-style models)
     "resize": "shorter-side-crop",      # the one resize imgsearch does: shorter side to the size, centre crop
     "output": 0,                        # the output to use: its name or its position
     "pooling": "none"}                  # "none" (already (n, D)), "gap" (a feature map), "class-token" (tokens)

Normalised, mean/std become ``scale = 1 / (255 std)`` and ``offset = -mean / std``: the model's input is
``pixel * scale + offset`` per channel, pixels in [0, 255], as KerasHub's image converters say it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from imgsearch.indexer.errors import InvalidInputError

LAYOUTS = ("NHWC", "NCHW")
POOLINGS = ("none", "gap", "class-token")
RESIZES = ("shorter-side-crop",)
CHANNELS = ("RGB", "BGR")
KEYS = ("input_size", "layout", "mean", "std", "scale", "offset", "channels", "resize", "output", "pooling", "input")
SPEC_SUFFIX = ".json"  # the spec beside the model: FILE.onnx.json


class OnnxSpecError(InvalidInputError):
    """An ONNX encoder's spec is missing, unreadable or invalid; the message names the field and what to write."""


@dataclass(frozen=True)
class OnnxSpec:
    input_size: int
    layout: str
    scale: tuple[float, float, float]  # model input = pixel * scale + offset, per channel (after ``channels``)
    offset: tuple[float, float, float]
    channels: str
    output: str | int
    pooling: str
    input: str | None = None  # the model's input by name; None: its only one
    resize: str = "shorter-side-crop"

    def normalised(self) -> dict:
        """What the manifest records and search reads back: every field, one spelling."""
        return {"input_size": self.input_size, "layout": self.layout, "scale": list(self.scale),
                "offset": list(self.offset), "channels": self.channels, "resize": self.resize,
                "output": self.output, "pooling": self.pooling, "input": self.input}

    def describe(self) -> str:
        """The manifest's human-readable ``preprocessing``."""
        return (f"{self.channels} in [0, 255] * scale + offset per channel, scale "
                f"{[round(v, 8) for v in self.scale]}, offset {[round(v, 8) for v in self.offset]}, {self.layout}")


def _fail(source: str, message: str) -> OnnxSpecError:
    return OnnxSpecError(f"the ONNX spec {source}: {message}")


def _three(data: dict, key: str, source: str) -> tuple[float, float, float] | None:
    value = data.get(key)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, 3) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and math.isfinite(v) for v in values):
        raise _fail(source, f"'{key}' is {json.dumps(value)[:60]}: write one number or three (one per channel)")
    return tuple(float(v) for v in (values * 3 if len(values) == 1 else values))


def _size(value, source: str) -> int:
    if isinstance(value, list) and len(value) == 2:
        if value[0] != value[1]:
            raise _fail(source, f"'input_size' is {value}, not square: imgsearch centre-crops a square; export "
                                "the model with a square input (h == w)")
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= 4096:
        raise _fail(source, f"'input_size' is {json.dumps(value)[:40]}: write the model's input side in pixels, "
                            "a whole number from 8 to 4096 (or [h, w] with h == w)")
    return value


def _choice(data: dict, key: str, choices: tuple[str, ...], default: str | None, source: str) -> str:
    value = data.get(key, default)
    if value is None:
        raise _fail(source, f"'{key}' is missing: write one of {', '.join(choices)}")
    spelt = value.upper() if isinstance(value, str) and key in ("layout", "channels") else value
    if spelt not in choices:
        raise _fail(source, f"'{key}' is {json.dumps(value)[:40]}: write one of {', '.join(choices)}")
    return spelt


def parse_spec(data, source: str = "given") -> OnnxSpec:
    """Check and normalise a spec (a dict as read from JSON); ``source`` names it in the errors."""
    if not isinstance(data, dict):
        raise _fail(source, f"is {type(data).__name__}, not a JSON object of the fields {', '.join(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise _fail(source, f"has unknown field(s) {', '.join(unknown)}: the fields are {', '.join(KEYS)}")
    if "input_size" not in data:
        raise _fail(source, "'input_size' is missing: write the model's input side in pixels, e.g. 224")
    size = _size(data["input_size"], source)
    mean, std = _three(data, "mean", source), _three(data, "std", source)
    scale, offset = _three(data, "scale", source), _three(data, "offset", source)
    if (mean or std) and (scale or offset):
        raise _fail(source, "has mean/std and scale/offset: write one pair (mean/std on [0, 1] pixels, "
                            "or scale/offset on [0, 255] pixels)")
    if mean or std:
        mean, std = mean or (0.0, 0.0, 0.0), std or (1.0, 1.0, 1.0)
        if any(s <= 0 for s in std):
            raise _fail(source, f"'std' is {list(std)}: every value must be above 0")
        scale = tuple(1.0 / (255.0 * s) for s in std)
        offset = tuple(-m / s for m, s in zip(mean, std))
    output = data.get("output", 0)
    if isinstance(output, bool) or not isinstance(output, (int, str)) or (isinstance(output, int) and output < 0) \
            or output == "":
        raise _fail(source, f"'output' is {json.dumps(output)[:40]}: write the output's name or its position "
                            "(0 for the first)")
    name = data.get("input")
    if name is not None and (not isinstance(name, str) or not name):
        raise _fail(source, f"'input' is {json.dumps(name)[:40]}: write the model input's name, or leave it out")
    return OnnxSpec(size, _choice(data, "layout", LAYOUTS, None, source), scale or (1.0, 1.0, 1.0),
                    offset or (0.0, 0.0, 0.0), _choice(data, "channels", CHANNELS, "RGB", source), output,
                    _choice(data, "pooling", POOLINGS, "none", source), name,
                    _choice(data, "resize", RESIZES, "shorter-side-crop", source))


def read_spec(value, model: Path) -> OnnxSpec:
    """The spec of the model file ``model``: ``value`` a dict, a JSON string (``{...}``), a path to a JSON
    file, or None for the file beside the model (``model.onnx.json``)."""
    if isinstance(value, dict):
        return parse_spec(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return parse_spec(json.loads(value), "given inline")
        except json.JSONDecodeError as exc:
            raise OnnxSpecError(f"the ONNX spec given inline is not JSON ({exc.msg} at character {exc.pos}): "
                                "write a JSON object, or the path of a .json file") from None
    if isinstance(value, str) and not value.strip():
        raise OnnxSpecError("the ONNX spec is empty: pass the path of a JSON file, or a JSON object")
    if value is not None and not isinstance(value, (str, Path)):
        raise OnnxSpecError(f"the ONNX spec must be a dict, a JSON string or a file path, not {type(value).__name__}")
    path = Path(value).expanduser() if value is not None else model.with_name(model.name + SPEC_SUFFIX)
    if not path.is_file():
        beside = "" if value is not None else f" (none given, and none beside the model at {path})"
        raise OnnxSpecError(f"the ONNX spec file {path} does not exist{beside}: pass --spec SPEC.json (its "
                            "fields: docs/guide/encoders.md), or write it beside the model as FILE.onnx.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OnnxSpecError(f"the ONNX spec file {path} is not readable JSON ({type(exc).__name__}): "
                            "write a JSON object of the fields in docs/guide/encoders.md") from None
    return parse_spec(data, str(path))
