"""Batches of decoded images -> L2-normalised embeddings."""

from __future__ import annotations

import numpy as np

from .backbones import Backbone
from .vectors import l2_normalize


class Embedder:
    """Runs a backbone through one compiled ``tf.function`` in fixed-size batches."""

    def __init__(self, backbone: Backbone, batch_size: int = 32):
        import tensorflow as tf

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.batch_size = batch_size
        size = backbone.input_size
        features, preprocess = backbone.features, backbone.preprocess

        @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)])
        def _embed(images):  # (n, S, S, 3) uint8
            x = preprocess(tf.cast(images, tf.float32))
            return features(x, training=False)  # (n, D)

        self._embed = _embed

    @property
    def dim(self) -> int:
        return self.backbone.dim

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 -> (n, D) float32 unit vectors."""
        images = np.asarray(images)
        size = self.backbone.input_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"expected images of shape (n, {size}, {size}, 3), got {images.shape}")
        if images.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        out = np.empty((len(images), self.dim), np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            out[start:start + len(batch)] = self._embed(batch).numpy()
        return l2_normalize(out)
