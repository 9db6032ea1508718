"""Rules about a manifest's contents that more than one reader relies on.
"""

from __future__ import annotations

import logging

from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.store import IndexFormatError

log = logging.getLogger(__name__)


def check_compatible(manifest: dict, backbone: str, dim: int, where: str, identity: dict | None = None) -> None:
    """Raise if an index folder was built with another backbone (name) or dimension, or with a KerasHub preset
    whose files have changed since, or an ONNX model file that changed since or another spec (``identity``:
    the backbone's ``extra``, with its ``preset`` and ``onnx`` records)."""
    built_with = backbone_name(manifest)
    preset = (identity or {}).get("preset")
    _check_onnx_model(manifest, backbone, where, (identity or {}).get("onnx"))
    recorded = manifest["backbone"].get("preset")
    if built_with == backbone and isinstance(recorded, dict) and recorded.get("sha256") != (preset or {}).get("sha256"):
        raise IndexFormatError(
            f"{where} was built with the KerasHub preset {built_with} whose files had SHA-256 "
            f"{str(recorded.get('sha256'))[:16]}..., but they now have {str((preset or {}).get('sha256'))[:16]}...: "
            "the preset changed, so its embeddings would not match the index's; put the preset it was built "
            "with back, or build a new index (another --index folder) with this one")
    if built_with != backbone or manifest["dim"] != dim:
        if is_external(manifest):
            raise IndexFormatError(
                f"{where} holds vectors made by another model ({built_with}, dimension {manifest['dim']}), not "
                f"{backbone} (dimension {dim}): add to it with imgsearch index-vectors --model "
                f"{manifest['backbone'].get('model', '?')}, or use another --index folder")
        raise IndexFormatError(
            f"{where} was built with backbone {built_with} "
            f"(dimension {manifest['dim']}), not {backbone} (dimension {dim}); "
            f"use --backbone {built_with} or another --index folder"
        )


def _check_onnx_model(manifest: dict, backbone: str, where: str, onnx: dict | None) -> None:
    recorded = manifest["backbone"].get("onnx")
    if backbone_name(manifest) != backbone or not isinstance(recorded, dict):
        return
    onnx = onnx or {}
    if recorded.get("sha256") != onnx.get("sha256"):
        raise IndexFormatError(
            f"{where} was built with the ONNX model file {recorded.get('file')} whose SHA-256 was "
            f"{str(recorded.get('sha256'))[:16]}..., but it now has {str(onnx.get('sha256'))[:16]}...: the model "
            "file changed, so its embeddings would not match the index's; put the file it was built with back, "
            "or build a new index (another --index folder) with this one")
    if recorded.get("spec") != onnx.get("spec"):
        raise IndexFormatError(
            f"{where} was built with the ONNX model {recorded.get('file')} under another spec "
            f"({recorded.get('spec')}): its embeddings would not match the index's; leave out --spec (the index "
            "keeps its own), or build a new index (another --index folder) with this spec")


def recorded_model_spec(manifest: dict, backbone: str | None = None) -> dict | None:
    """The ONNX spec the index was built with (None: not an ONNX model, or ``backbone`` is another one): search
    and later indexing runs embed with it, whatever file sits beside the model now."""
    recorded = manifest["backbone"].get("onnx")
    if not isinstance(recorded, dict) or (backbone is not None and backbone != backbone_name(manifest)):
        return None
    return recorded.get("spec")


class ExternalVectorsError(InvalidInputError):
    """An image query of an index whose vectors another model made: there is no model here to embed it."""


def is_external(manifest: dict) -> bool:
    """Whether the index holds vectors made elsewhere (``imgsearch index-vectors``)."""
    return bool(manifest["backbone"].get("external"))


def check_image_queries(manifest: dict) -> None:
    """Raise ExternalVectorsError if images cannot be embedded for this index."""
    if is_external(manifest):
        raise ExternalVectorsError(
            f"this index holds vectors made by another model ({backbone_name(manifest)}), so an image cannot be "
            "embedded for it here: query it by vector (made by that model) or by id")


class TextQueriesUnsupportedError(InvalidInputError):
    """A text query (or a zero-shot head) of an index whose encoder has no text tower: a CNN, DINOv2, vectors
    made elsewhere.  Only an image-text preset (SigLIP) embeds words into its images' space."""


def text_tower(manifest: dict) -> dict | None:
    """What the manifest records of the encoder's text tower (``backbone.preset.text``), or None."""
    preset = manifest["backbone"].get("preset")
    text = preset.get("text") if isinstance(preset, dict) else None
    return text if isinstance(text, dict) else None


def check_text_queries(manifest: dict) -> dict:
    """The text tower's record, or TextQueriesUnsupportedError saying what to do instead."""
    preset = manifest["backbone"].get("preset")
    if text_tower(manifest) is None and isinstance(preset, dict) and isinstance(preset.get("text_unavailable"), str):
        raise TextQueriesUnsupportedError(f"this index's encoder ({backbone_name(manifest)}) has a text tower, but "
                                          + preset["text_unavailable"])
    if (text := text_tower(manifest)) is None:
        raise TextQueriesUnsupportedError(
            f"this index's encoder ({backbone_name(manifest)}) has no text tower, so it cannot be searched by text: "
            "search it by image, id or vector, or index the images with an image-text preset such as "
            "--backbone siglip_base_patch16_224")
    return text


def check_not_external(manifest: dict, where) -> None:
    """Raise if images would be added to an index of vectors made elsewhere."""
    if is_external(manifest):
        raise ExternalVectorsError(
            f"{where} holds vectors made by another model ({backbone_name(manifest)}): add to it with "
            "imgsearch index-vectors, or index images into another --index folder")


def precision(manifest: dict) -> str:
    """The precision the index's embeddings were computed in; indexes from before precisions were float32."""
    return manifest["backbone"].get("precision") or "float32"


def check_precision_compatible(manifest: dict, requested: str | None, where: str) -> str:
    """The index's precision; raises if ``requested`` (None: whatever the index has) is another one."""
    built_with = precision(manifest)
    if requested is not None and requested != built_with:
        raise IndexFormatError(
            f"{where} was built with precision {built_with}, not {requested}: embeddings of two precisions "
            f"must not share an index; use --precision {built_with} (or leave it out) or another --index folder"
        )
    return built_with


def resample(manifest: dict) -> str:
    """The filter the index's images were resized with; indexes from before it was recorded: bicubic."""
    return manifest["backbone"].get("resample") or "bicubic"


def model_precision(manifest: dict) -> dict:
    """Embedder keyword arguments that compute embeddings as the index's were: precision and calibration set.

    Every path that embeds for an index (indexing runs, queries, Spark executors) takes them from here, so a
    query of an int8 index runs the int8 model whatever the defaults are.
    """
    built_with = precision(manifest)
    if built_with == "float32":
        return {"precision": "float32", "calibration": None}
    from imgsearch.indexer.inputs.calibration import CALIBRATION

    recorded = manifest["backbone"].get("calibration") or {}
    here = CALIBRATION.identity()
    if recorded.get("sha256") not in (None, here["sha256"]):
        log.warning("this index's int8 model was calibrated on images with digest %s, this install has %s "
                    "(another scikit-learn or matplotlib?): its embeddings may differ slightly",
                    recorded.get("sha256"), here["sha256"])
    return {"precision": built_with, "calibration": CALIBRATION}


def search_dim(manifest: dict) -> int:
    """The dimension of the vectors the search indexes hold (after whitening, if any)."""
    return manifest.get("search_dim", manifest["dim"])


def backbone_name(manifest: dict) -> str:
    """The name of the backbone the index was built with."""
    return manifest["backbone"]["name"]
