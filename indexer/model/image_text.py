"""Image-text presets (issue 33): a KerasHub SigLIP or CLIP backbone, whose image tower embeds the index's
images and whose text tower embeds words into the same space (text queries, zero-shot heads).

Read here without TensorFlow, from the preset's files: which tower is which, the image embedding's dimension,
what the text tower needs (its tokenizer and preprocessor classes, the sequence length) and the logit scale and
bias learned (SigLIP's ``siglip_head``: ``logit = exp(scale) * cosine + bias``; CLIP's head has a scale only),
read from the weights file with h5py.  The tokenizer's identity is the preset's digest (``hub.folder_digest``):
its vocabulary files are among the preset's files, so another vocabulary is another preset.

The image embedding is the backbone's own (``get_vision_embeddings``), what its training compares with the text
embedding, L2-normalised like every embedding: for SigLIP the pooled vector of its attention-pooling head
(``SigLIPVisionEncoder``: one learned query attending over the patch tokens); for CLIP the class token, pooled
and projected (``vision_pooler``, ``vision_projection``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# KerasHub backbone class -> its text encoder's class (the towers' names in the backbone's config)
IMAGE_TEXT_CLASSES = {"SigLIPBackbone": "SigLIPTextEncoder", "CLIPBackbone": "CLIPTextEncoder"}
POOLED = "the vision encoder's pooled output (SigLIP's attention-pooling head)"
POOLINGS = {"SigLIPBackbone": POOLED,
            "CLIPBackbone": "the class token, pooled and projected (CLIP's image embedding)"}
TEXT_FILES = ("tokenizer.json", "preprocessor.json")  # a downloaded image-text preset's files besides the encoder's


def is_image_text(class_name: str) -> bool:
    return class_name in IMAGE_TEXT_CLASSES


def text_file(rel: str) -> bool:
    """A file of the text tower's: its tokenizer, preprocessor or their assets (the vocabulary)."""
    return rel in TEXT_FILES or rel.startswith("assets/")


def _tower(settings: dict, key: str) -> dict:
    tower = settings.get(key)
    config = tower.get("config") if isinstance(tower, dict) else None
    return config if isinstance(config, dict) else {}


def image_dim(settings: dict, class_name: str = "SigLIPBackbone") -> int | None:
    """The image embedding's dimension: CLIP's projection size; SigLIP's vision hidden size (compared as it is)."""
    dim = settings.get("projection_dim") if class_name == "CLIPBackbone" else \
        _tower(settings, "vision_encoder").get("hidden_dim")
    return dim if isinstance(dim, int) and dim > 0 else None


def image_shape(settings: dict):
    return _tower(settings, "vision_encoder").get("image_shape")


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _registered(config: dict) -> str:
    return str(config.get("registered_name") or config.get("class_name") or "").split(">")[-1]


def head_scale(folder: Path) -> tuple[float | None, float | None]:
    """SigLIP's logit scale (``exp`` of the stored variable: the multiplier of a cosine) and bias, from the
    weights file(s); (None, None) when they cannot be read (the text tower still works; a zero-shot head then
    says which temperature it took instead)."""
    try:
        import h5py
    except ImportError:
        return None, None
    found: list = []

    def visit(name, obj):  # SigLIP's head: scale and bias; CLIP's: scale
        if not found and name.endswith(("sig_lip_head/vars", "clip_head/vars")) and "0" in obj:
            found.append((float(obj["0"][()]), float(obj["1"][()]) if "1" in obj else None))

    for path in sorted(folder.glob("model*.weights.h5")):
        try:
            with h5py.File(path, "r") as f:
                f.visititems(visit)
        except (OSError, ValueError, TypeError):
            continue
        if found:
            scale, bias = found[0]
            return (math.exp(scale) if math.isfinite(scale) and scale < 50 else None,
                    bias if bias is not None and math.isfinite(bias) else None)
    return None, None


def unavailable(class_name: str) -> str:
    """Why a pair saved without its preprocessor takes no words, and the command that adds it."""
    return ("the preset was saved without its preprocessor (tokenizer and vocabulary), so words cannot be embedded: "
            f"save keras_hub.models.{class_name.removesuffix('Backbone')}Preprocessor.from_preset(NAME)"
            ".save_to_preset(FOLDER) into the preset folder, then index again")


def describe_text_tower(folder: Path, class_name: str, settings: dict) -> dict | None:
    """The manifest's ``backbone.preset.text``: what embeds a text query into this index's space; None where the
    preset has no preprocessor to tokenize with (``unavailable`` says why)."""
    text = _tower(settings, "text_encoder")
    if not (folder / "preprocessor.json").is_file() or not (folder / "tokenizer.json").is_file():
        return None
    preprocessor = _json(folder / "preprocessor.json")
    pre_config = preprocessor.get("config") if isinstance(preprocessor.get("config"), dict) else {}
    tokenizer = _json(folder / "tokenizer.json")
    length = pre_config.get("sequence_length") or text.get("max_sequence_length")
    scale, bias = head_scale(folder)
    return {
        "class": IMAGE_TEXT_CLASSES[class_name],
        "tokenizer": _registered(tokenizer) or None,
        "preprocessor": _registered(preprocessor) or None,
        "sequence_length": length if isinstance(length, int) else None,
        "tokenizer_identity": "the preset's sha256 (its vocabulary is one of the preset's files)",
        "logit_scale": scale,
        "logit_bias": bias,
    }
