"""Batches of decoded images -> L2-normalised embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgsearch.indexer.model.backbones import Backbone
from imgsearch.indexer.vectors import l2_normalize


class Embedder:
    """Runs a backbone in fixed-size batches through the chosen runtime.

    ``runtime``: "auto" (TFLite on CPU, tf.function on GPU), "tflite" or "tf".
    ``threads``: TFLite inference threads (default: one per core).
    ``precision``: "float32" or "int8" (TFLite only; calibrated on ``calibration``,
    e.g. ``indexer.inputs.calibration.CALIBRATION``).
    """

    def __init__(self, backbone: Backbone, batch_size: int = 32, runtime: str = "auto",
                 cache_dir: Path | None = None, threads: int | None = None, precision: str = "float32",
                 calibration=None):
        from imgsearch.indexer.model.runtime import make_runner

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.batch_size = batch_size
        self.precision = precision
        self.runner = make_runner(backbone, runtime, cache_dir, threads, precision, calibration)

    @property
    def dim(self) -> int:
        return self.backbone.dim

    @property
    def runtime(self) -> str:
        return self.runner.description

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
            out[start:start + len(batch)] = self.runner(batch)
        return l2_normalize(out)


class FeatureMapEmbedder:
    """The explaining model (issue 18): one forward pass gives an image's embedding and the feature map it pools.

    A model of its own (its own cached flatbuffer, ``outputs="map"`` in ``indexer/model/runtime.py``), so
    indexing and search keep running exactly the model they always ran; its pooled output equals theirs
    (tests/search/test_explain.py checks it).  One image per call: the interpreter keeps its batch size of 1.
    """

    def __init__(self, backbone: Backbone, runtime: str = "auto", cache_dir: Path | None = None,
                 threads: int | None = None, precision: str = "float32", calibration=None):
        from imgsearch.indexer.model.runtime import make_runner

        self.backbone = backbone
        self.precision = precision
        self.runner = make_runner(backbone, runtime, cache_dir, threads, precision, calibration, outputs="map")
        self.forward_passes = 0  # images run through the model so far: what an explanation cost, measured

    def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S, S, 3) uint8 -> ((D,) pooled features, not normalised; (h, w, D) the feature map they average)."""
        size = self.backbone.input_size
        if image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image of shape ({size}, {size}, 3), got {image.dtype} {image.shape}")
        pooled, feature_map = self.runner(image[None])  # (1, D), (1, h, w, D)
        self.forward_passes += 1
        return pooled[0], feature_map[0]
