"""The text tower of an image-text preset (issue 33): words -> unit vectors in the index's image space.

A text is prepared by the preset's own preprocessor (``preprocessor.json``; SigLIP: lower case, punctuation
removed, SentencePiece tokens, the end token, padded to the sequence length), run through the backbone's text
encoder and L2-normalised: exactly what the image embeddings are compared with in SigLIP's training.  One
encoder per preset and process (``load_text_encoder``), opened anew when the preset folder's files change.
"""

from __future__ import annotations

import json
import threading

import numpy as np

from imgsearch.indexer.model.hub import Preset, PresetError, folder_stamp, open_preset, require_keras_hub
from imgsearch.indexer.vectors import l2_normalize


class TextEncoder:
    """Texts -> (n, D) unit vectors, by the text tower of ``preset`` (an opened image-text preset)."""

    def __init__(self, preset: Preset):
        if preset.text is None:
            why = preset.describe().get("text_unavailable") or ("text needs an image-text preset such as SigLIP")
            raise PresetError(f"the KerasHub preset {preset.name} ({preset.class_name}) has no usable text tower: "
                              + why)
        self.preset = preset
        self.sequence_length = preset.text.get("sequence_length")
        self._model = self._preprocessor = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                keras_hub = require_keras_hub()
                import keras
                import tensorflow as tf

                folder = str(self.preset.folder)
                try:
                    backbone = keras_hub.models.Backbone.from_preset(folder)
                    registered = json.loads((self.preset.folder / "preprocessor.json").read_text())["registered_name"]
                    preprocessor = keras.saving.get_registered_object(registered).from_preset(folder)
                except Exception as exc:
                    first = str(exc).splitlines()[0][:200] if str(exc) else ""
                    raise PresetError(f"the text tower of the KerasHub preset in {folder} cannot be loaded "
                                      f"({type(exc).__name__}: {first}): save it with its preprocessor "
                                      "(tokenizer and vocabulary), or copy it again") from None
                preprocessor.image_converter = None  # texts only: no image passes through it
                token_ids = keras.Input((None,), dtype="int32", name="token_ids")
                model = keras.Model(token_ids, backbone.get_text_embeddings(token_ids), name="text-tower")
                # traced once: a query's text through the eager Keras call costs ~40x more (measured: 54 vs 1.4 ms
                # on the two-layer test model)
                self._model = tf.function(lambda ids: model(ids, training=False), reduce_retracing=True,
                                          input_signature=[tf.TensorSpec((None, None), tf.int32)])
                self._preprocessor = preprocessor
            return self._model, self._preprocessor

    def tokenize(self, texts: list[str]) -> np.ndarray:
        """(n, L) int32 token ids, as the preset's preprocessor packs them."""
        _, preprocessor = self._load()
        packed = preprocessor({"images": None, "prompts": list(texts)})
        return np.asarray(packed["token_ids"], np.int32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, D) float32 unit vectors of ``texts``."""
        model, _ = self._load()
        if not texts:
            return np.zeros((0, self.preset.dim), np.float32)
        raw = np.asarray(model(self.tokenize(texts)), np.float32)  # (n, D)
        return l2_normalize(raw)


_LOADED: dict[str, tuple[tuple | None, TextEncoder]] = {}
_LOCK = threading.Lock()


def load_text_encoder(name: str) -> TextEncoder:
    """The text encoder of the preset ``name`` (a folder or a preset name), built once per process and preset
    (a folder whose files changed since is opened anew)."""
    stamp = folder_stamp(name)
    with _LOCK:
        known = _LOADED.get(name)
        if known is None or known[0] != stamp:
            _LOADED[name] = (stamp, TextEncoder(open_preset(name)))
        return _LOADED[name][1]
