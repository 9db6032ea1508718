"""Image encoders from KerasHub presets (issue 33): a preset name (downloaded once by keras-hub) or a local
preset folder (what ``backbone.save_to_preset(DIR)`` writes, e.g. a preset copied to an offline machine).

A preset is opened here without TensorFlow: its ``config.json`` gives the backbone class and input size, its
``image_converter.json`` (if any) the preprocessing, and a SHA-256 over its files its identity (the manifest
records it, so an index is never queried with another preset's, or a changed folder's, embeddings).  The Keras
model is built only when it is run (``Preset.load_models``), through ``keras_hub.models.Backbone.from_preset``
on the folder: a downloaded preset and a copied-in one take the very same path.

Pooling to one vector per image:

* a ViT-style backbone (DINOv2, DINOv3, ViT), whose output is tokens ``(n, 1 + registers + patches, D)``: the
  **class token** (token 0, after the final layer norm).  DINOv2 trains the class token as the image-level
  descriptor (its DINO loss is on it) and the DINOv2 paper's instance-retrieval results (Oxford, Paris, Met)
  use it alone; the mean of the patch tokens is the dense, segmentation-oriented output.  One vector of
  ``hidden_dim``, L2-normalised like the CNNs'.
* any other image backbone, whose output is a feature map ``(n, h, w, C)``: global average pooling, as the
  CNNs of ``backbones.py`` do.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch.indexer.errors import ImgsearchError, MissingDependencyError
from imgsearch.indexer.model import image_text

log = logging.getLogger(__name__)

HUB_EXTRA = "pip install 'imgsearch[hub]'"
# backbones whose output is tokens with the class token first (KerasHub class names)
TOKEN_CLASSES = frozenset({"DINOV2Backbone", "DINOV3Backbone", "ViTBackbone"})
CLASS_TOKEN = "class token (token 0 after the final layer norm)"
GAP = "global average pooling of the feature map"
PRESET_FILES = ("config.json", "image_converter.json", "metadata.json")
HUB_PREFIX = "hub:"  # spells a preset name that imgsearch does not list: hub:kaggle://org/model/keras/variant


class PresetError(ImgsearchError, RuntimeError):
    """A KerasHub preset cannot be opened: missing, not a preset folder, damaged, or not downloadable here."""


def _keras_hub_location() -> Path | None:
    spec = importlib.util.find_spec("keras_hub")
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def preset_names() -> frozenset[str]:
    """The names of KerasHub's image-backbone presets, read from its preset tables without importing it."""
    root = _keras_hub_location()
    if root is None:
        return frozenset()
    names = set()
    for path in sorted((root / "src" / "models").glob("*/*_presets.py")):
        try:
            tree = ast.parse(path.read_text())
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                names.update(k.value for k in node.value.keys if isinstance(k, ast.Constant) and
                             isinstance(k.value, str))
    return frozenset(names)


def is_folder(name: str) -> bool:
    """Whether ``name`` means a preset folder: a path (a separator, ``.`` or ``~`` first) or an existing folder;
    not a handle (``hub:...``, ``kaggle://...``, ``hf://...``)."""
    if name.startswith(HUB_PREFIX) or "://" in name:
        return False
    return "/" in name or "\\" in name or name.startswith((".", "~")) or Path(name).is_dir()


def is_preset(name: str) -> bool:
    """Whether ``name`` means a KerasHub preset: a folder, a handle (``hub:HANDLE``, ``kaggle://...``), or the
    name of one of KerasHub's presets."""
    return name.startswith(HUB_PREFIX) or "://" in name or is_folder(name) or name in preset_names()


def require_keras_hub():
    try:
        import keras_hub
    except ImportError as exc:
        raise MissingDependencyError(f"KerasHub presets need keras-hub: {HUB_EXTRA}") from exc
    return keras_hub


def _preset_file(rel: str, text: bool = False) -> bool:
    """The files of a downloaded preset that its image encoder reads (and with ``text``, its text tower: the
    tokenizer, its vocabulary, the preprocessor): a download cache folder may hold others of the same preset
    later (a tokenizer, say), which must not change an image encoder's identity."""
    encoder = rel in PRESET_FILES or (rel.startswith("model") and ".weights." in rel)
    return encoder or (text and image_text.text_file(rel))


def folder_digest(folder: Path, downloaded: bool = False, text: bool = False) -> str:
    """SHA-256 over the folder's files (relative path and content, sorted by path); hidden files left out, and
    for a ``downloaded`` preset (keras-hub's cache) the files other than the encoder's (``text``: and its text
    tower's)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or (downloaded and not _preset_file(rel, text)):
            continue
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def folder_stamp(name: str) -> tuple | None:
    """A preset folder's files with their sizes and modification times: a changed folder is opened anew."""
    if not is_folder(name) or not Path(name).expanduser().is_dir():
        return None
    folder = Path(name).expanduser().resolve()
    return tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(folder.rglob("*")) if p.is_file())


def _download(name: str) -> Path:
    """The local folder of the preset ``name``, downloaded by keras-hub if it is not cached yet."""
    require_keras_hub()
    from keras_hub.src.utils import preset_utils

    handle = name.removeprefix(HUB_PREFIX)
    try:
        config = Path(preset_utils.get_file(handle, "config.json"))
        for optional in ("image_converter.json", "metadata.json"):
            try:
                preset_utils.get_file(handle, optional)
            except FileNotFoundError:
                pass
        weights = "model.weights.json" if preset_utils.check_file_exists(handle, "model.weights.json") \
            else "model.weights.h5"
        preset_utils.get_file(handle, weights)
    except Exception as exc:  # offline: a connection error, whatever library raised it
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise PresetError(
            f"could not download the KerasHub preset {handle!r} ({first}): on a machine with internet run "
            f"python -c \"import keras_hub as h; h.models.Backbone.from_preset('{handle}').save_to_preset('DIR'); "
            f"h.layers.ImageConverter.from_preset('{handle}').save_to_preset('DIR')\", copy DIR here and pass "
            f"--backbone /path/to/DIR") from None
    return config.parent


@dataclass
class Preset:
    """An opened preset: what indexing and the manifest need, without its Keras model."""

    name: str  # what the manifest records and ``load_backbone`` takes back: the preset's name, or the folder's path
    folder: Path
    source: str  # "name" or "folder"
    digest: str  # SHA-256 over the folder's files
    class_name: str
    input_size: int
    dim: int
    pooling: str
    scale: np.ndarray = field(repr=False)  # (3,) float32: model input = pixel * scale + offset, per channel
    offset: np.ndarray = field(repr=False)
    converter: str = ""  # what the image converter said, for the manifest
    text: dict | None = None  # an image-text preset's text tower (image_text.describe_text_tower), else None

    @property
    def preprocessing(self) -> str:
        if not self.converter:
            return "none: the preset has no image converter (raw RGB in [0, 255])"
        return (f"{self.converter}: RGB in [0, 255] * scale + offset per channel, scale "
                f"{[round(float(v), 8) for v in self.scale]}, offset {[round(float(v), 8) for v in self.offset]}")

    def describe(self) -> dict:
        """The manifest's ``backbone.preset``."""
        described = {"source": self.source, "sha256": self.digest, "class": self.class_name, "pooling": self.pooling,
                     "scale": [float(v) for v in self.scale], "offset": [float(v) for v in self.offset]}
        if self.text is not None:
            return dict(described, text=self.text)
        if image_text.is_image_text(self.class_name):  # an image-text pair whose text half was not saved
            return dict(described, text_unavailable=image_text.unavailable(self.class_name))
        return described

    def preprocess_np(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32) * self.scale + self.offset

    def load_models(self):
        """(features, None, preprocess): a keras.Model preprocessed (n, S, S, 3) -> pooled (n, D), and the
        preprocessing as TensorFlow ops."""
        keras_hub = require_keras_hub()
        import keras
        import tensorflow as tf

        try:
            hub = keras_hub.models.Backbone.from_preset(str(self.folder))
        except Exception as exc:
            raise PresetError(f"the KerasHub preset in {self.folder} cannot be loaded "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}): "
                              "save it again with save_to_preset, or copy it again") from None
        size = self.input_size
        images = keras.Input((size, size, 3), name="images")
        if image_text.is_image_text(self.class_name):  # the image tower of an image-text pair: one vector
            out = hub.get_vision_embeddings(images)
        else:
            try:
                out = hub({"images": images})  # KerasHub image backbones name their one input "images"
            except (ValueError, KeyError, TypeError):
                out = hub(images)
        if isinstance(out, dict):
            raise PresetError(f"{self.class_name} in {self.folder} returns several outputs: not an image backbone")
        if image_text.is_image_text(self.class_name):
            pooled = out
        elif self.pooling == CLASS_TOKEN:
            if len(out.shape) != 3:
                raise PresetError(f"{self.class_name} gives outputs of shape {out.shape}, not tokens")
            pooled = out[:, 0, :]
        else:
            if len(out.shape) != 4:
                raise PresetError(f"{self.class_name} gives outputs of shape {out.shape}, not a feature map: "
                                  "imgsearch pools tokens of DINOv2, DINOv3 and ViT, and feature maps")
            pooled = keras.layers.GlobalAveragePooling2D(name="gap")(out)
        features = keras.Model(images, pooled, name="hub-features")
        scale, offset = tf.constant(self.scale), tf.constant(self.offset)

        def preprocess(x):
            return x * scale + offset

        return features, None, tf.function(preprocess)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"{path} is not readable JSON ({exc.__class__.__name__}): this {what} is damaged; "
                          "copy the preset folder again") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path} is not a JSON object: this {what} is damaged; copy the preset folder again")
    return data


def _size(value) -> int | None:
    if isinstance(value, (list, tuple)) and len(value) >= 2 and value[0] == value[1] and isinstance(value[0], int):
        return int(value[0])
    return None


def _channels(value, default: float, what: str, folder: Path) -> np.ndarray:
    """An image converter's scale or offset as (3,) float32: one number, or one per channel."""
    if value is None:
        return np.full(3, default, np.float32)
    try:
        values = np.asarray(value if isinstance(value, (list, tuple)) else [value], np.float32).reshape(-1)
    except (TypeError, ValueError):
        values = np.zeros(0, np.float32)
    if values.size not in (1, 3) or not np.isfinite(values).all():
        raise PresetError(f"the image converter in {folder} has {what} {str(value)[:60]}, not a number or three: "
                          "copy the preset folder again")
    return np.broadcast_to(values, (3,)).astype(np.float32)


def open_preset(name: str) -> Preset:
    """Open the preset ``name`` (a folder, or a name that keras-hub downloads): identity, size, preprocessing."""
    if is_folder(name):
        folder, source = Path(name).expanduser().resolve(), "folder"
        if not folder.is_dir():
            raise PresetError(f"KerasHub preset folder {folder} does not exist: pass a folder written by "
                              "save_to_preset, or a preset name")
        label = str(folder)
    else:
        folder, source, label = _download(name), "name", name
    if not (folder / "config.json").is_file():
        raise PresetError(f"{folder} is not a KerasHub preset folder: it has no config.json "
                          "(write one with backbone.save_to_preset(DIR))")
    config = _read_json(folder / "config.json", "preset")
    class_name = str(config.get("registered_name") or config.get("class_name") or "").split(">")[-1]
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    converter_config, converter = {}, ""
    if (folder / "image_converter.json").is_file():
        converter_json = _read_json(folder / "image_converter.json", "preset's image converter")
        converter_config = converter_json.get("config") if isinstance(converter_json.get("config"), dict) else {}
        converter = str(converter_json.get("class_name") or "ImageConverter")
    paired = image_text.is_image_text(class_name)
    size = _size(converter_config.get("image_size")) or _size(settings.get("image_shape")) or (
        _size(image_text.image_shape(settings)) if paired else None)
    if not size:
        raise PresetError(f"the preset in {folder} says no square input size (image_shape or its image "
                          "converter's image_size): save it with a fixed image_shape")
    pooling = image_text.POOLINGS[class_name] if paired else CLASS_TOKEN if class_name in TOKEN_CLASSES else GAP
    dim = settings.get("hidden_dim") if pooling == CLASS_TOKEN else \
        image_text.image_dim(settings, class_name) if paired else None
    if not isinstance(dim, int) or dim < 1:
        dim = _feature_dim(folder)
    if paired and source == "name":
        _download_text(name)
    digest = folder_digest(folder, downloaded=source == "name", text=paired)
    return Preset(label, folder, source, digest, class_name, size, int(dim), pooling,
                  _channels(converter_config.get("scale"), 1.0, "scale", folder),
                  _channels(converter_config.get("offset"), 0.0, "offset", folder), converter,
                  image_text.describe_text_tower(folder, class_name, settings) if paired else None)


def _download_text(name: str) -> None:
    """An image-text preset's text files (tokenizer, preprocessor, vocabulary) into keras-hub's cache beside its
    encoder's, so that its digest covers them and a text query finds them offline later."""
    from keras_hub.src.utils import preset_utils

    handle = name.removeprefix(HUB_PREFIX)
    for rel in ("tokenizer.json", "preprocessor.json", "assets/tokenizer/vocabulary.spm",  # SigLIP's SentencePiece
                "assets/tokenizer/vocabulary.json", "assets/tokenizer/merges.txt"):  # CLIP's byte-pair encoding
        try:
            preset_utils.get_file(handle, rel)
        except FileNotFoundError:
            pass
        except Exception as exc:  # offline between the two downloads
            raise PresetError(f"could not download {rel} of the KerasHub preset {handle!r} "
                              f"({type(exc).__name__}): try again with internet") from None


def _feature_dim(folder: Path) -> int:
    """The channels of a feature-map backbone's output: its config does not say them, so the model is built."""
    keras_hub = require_keras_hub()
    try:
        model = keras_hub.models.Backbone.from_preset(str(folder), load_weights=False)
    except Exception as exc:
        raise PresetError(f"the KerasHub preset in {folder} cannot be built ({type(exc).__name__}): "
                          "copy it again") from None
    return int(model.output.shape[-1])
