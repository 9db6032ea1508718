"""The shape of a manifest, checked on every read, so damage is reported in words and never as a traceback.

A manifest comes from disk: a truncated write, an editor, another program or
an attacker may have put anything there.  Every field the code relies on is
checked for its type (and file names for being plain names inside the folder,
since they become paths) before anything uses it.
"""

from __future__ import annotations

import re

from imgsearch.indexer.errors import DamagedIndexError

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")  # a file name in the folder: no '/', no '..'


class ManifestShapeError(DamagedIndexError, ValueError):
    """A manifest field is missing or of the wrong type; the message names the field."""


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _int(value, field: str, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ManifestShapeError(f"'{field}' must be an integer >= {low}, got {_kind(value)} {str(value)[:40]}")


def _number(value, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestShapeError(f"'{field}' must be a number, got {_kind(value)}")


def _type(value, types, field: str, what: str) -> None:
    if not isinstance(value, types):
        raise ManifestShapeError(f"'{field}' must be {what}, got {_kind(value)}")


def _name(value, field: str, subfolder_ok: bool = False) -> None:
    _type(value, str, field, "a file name")
    parts = value.split("/") if subfolder_ok else [value]
    if len(parts) > 2 or not all(SAFE_NAME.match(p) for p in parts):
        raise ManifestShapeError(f"'{field}' must be a plain file name inside the index folder, got {value[:80]!r}")


def _optional(manifest: dict, field: str, check) -> None:
    if manifest.get(field) is not None:
        check(manifest[field])


def check_manifest_shape(manifest) -> None:
    """Raise ManifestShapeError naming the first field that is missing or of the wrong type."""
    _type(manifest, dict, "manifest", "a JSON object")
    for field in ("backbone", "dim", "count", "shards"):
        if field not in manifest:
            raise ManifestShapeError(f"'{field}' is missing")
    backbone = manifest["backbone"]
    _type(backbone, dict, "backbone", "an object")
    _type(backbone.get("name"), str, "backbone.name", "a string")
    _optional(backbone, "input_size", lambda v: _int(v, "backbone.input_size"))  # 0: vectors without a model
    _optional(backbone, "precision", _check_precision)  # absent: float32 (indexes from before precisions)
    _optional(backbone, "precision_reason", lambda v: _type(v, str, "backbone.precision_reason", "a string"))
    _optional(backbone, "calibration", lambda v: _type(v, dict, "backbone.calibration", "an object"))
    _optional(backbone, "resample", _check_resample)  # absent: bicubic (indexes from before it was recorded)
    _optional(backbone, "external", lambda v: _type(v, bool, "backbone.external", "true or false"))
    _optional(backbone, "preset", _check_preset)  # a KerasHub preset's identity (issue 33): checked on every open
    _optional(backbone, "onnx", _check_onnx)  # an ONNX model file's identity and spec (issue 33): likewise
    _int(manifest["dim"], "dim", 1)
    _int(manifest["count"], "count")
    _type(manifest["shards"], list, "shards", "a list of file names")
    for i, shard in enumerate(manifest["shards"]):
        _name(shard, f"shards[{i}]")
    _optional(manifest, "retired_shards", lambda v: _type(v, list, "retired_shards", "a list of file names"))
    for i, shard in enumerate(manifest.get("retired_shards") or []):
        _name(shard, f"retired_shards[{i}]")
    _optional(manifest, "index_file", lambda v: _name(v, "index_file"))
    for field in ("generation", "next_id"):
        _optional(manifest, field, lambda v, f=field: _int(v, f))
    _optional(manifest, "search_dim", lambda v: _int(v, "search_dim", 1))
    for field in ("metric", "created", "updated", "runtime", "index_type", "shard_high"):
        _optional(manifest, field, lambda v, f=field: _type(v, str, f, "a string"))
    _optional(manifest, "versions", lambda v: _type(v, dict, "versions", "an object"))
    _optional(manifest, "files", _check_files)
    _optional(manifest, "ann", _check_ann)
    _optional(manifest, "whitening", _check_whitening)
    _optional(manifest, "copies", _check_copies)


def _check_preset(value) -> None:
    _type(value, dict, "backbone.preset", "an object")
    _type(value.get("sha256"), str, "backbone.preset.sha256", "a string")
    if "text" in value:  # an image-text preset's text tower (issue 33): what text queries and zero-shot heads read
        _type(value["text"], dict, "backbone.preset.text", "an object")
        scale = value["text"].get("logit_scale")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
            raise ManifestShapeError(f"'backbone.preset.text.logit_scale' must be a positive number or null, got "
                                     f"{str(scale)[:40]!r}")


def _check_onnx(value) -> None:
    _type(value, dict, "backbone.onnx", "an object")
    _type(value.get("sha256"), str, "backbone.onnx.sha256", "a string")
    _type(value.get("spec"), dict, "backbone.onnx.spec", "an object")


def _check_precision(value) -> None:
    if value not in ("float32", "int8"):
        raise ManifestShapeError(f"'backbone.precision' must be \"float32\" or \"int8\", got {str(value)[:40]!r}")


def _check_resample(value) -> None:
    if value not in ("bicubic", "bilinear"):  # inputs/images.RESAMPLING
        raise ManifestShapeError(f"'backbone.resample' must be \"bicubic\" or \"bilinear\", got {str(value)[:40]!r}")


def _check_files(files) -> None:
    _type(files, dict, "files", "an object of file name -> {size, sha256}")
    for rel, record in files.items():
        _name(rel, f"files[{rel[:40]!r}]", subfolder_ok=True)
        _type(record, dict, f"files[{rel!r}]", "an object with size and sha256")
        _optional(record, "size", lambda v, r=rel: _int(v, f"files[{r!r}].size"))
        _optional(record, "sha256", lambda v, r=rel: _type(v, str, f"files[{r!r}].sha256", "a string"))


def _check_ann(ann) -> None:
    _type(ann, dict, "ann", "an object")
    _type(ann.get("factory"), str, "ann.factory", "a FAISS factory string")
    _optional(ann, "memory_bytes", lambda v: _number(v, "ann.memory_bytes"))
    _optional(ann, "trained_file", lambda v: _name(v, "ann.trained_file"))
    _optional(ann, "lists_file", lambda v: _name(v, "ann.lists_file"))
    _optional(ann, "options", lambda v: _type(v, dict, "ann.options", "an object"))
    _optional(ann, "space", lambda v: _type(v, list, "ann.space", "a list"))
    tuning = ann.get("tuning")
    if tuning is not None:
        _type(tuning, dict, "ann.tuning", "an object")
        _optional(tuning, "params", lambda v: _type(v, dict, "ann.tuning.params", "an object"))
    for field in ("built_n", "tuned_n"):
        _optional(ann, field, lambda v, f=field: _int(v, f"ann.{f}"))


def _check_whitening(whitening) -> None:
    _type(whitening, dict, "whitening", "an object")
    _name(whitening.get("file"), "whitening.file")
    _int(whitening.get("dim"), "whitening.dim", 1)
    _optional(whitening, "learned_on", lambda v: _int(v, "whitening.learned_on"))
    _optional(whitening, "shrink", lambda v: _number(v, "whitening.shrink"))


def _check_copies(copies) -> None:
    _type(copies, dict, "copies", "an object")
    _name(copies.get("file"), "copies.file")
    _optional(copies, "count", lambda v: _int(v, "copies.count"))
