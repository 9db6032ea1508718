"""The tests' fake model: a backbone whose features are the pixels' block means through a seeded random projection.

A real backbone in the registry (``register_backbone``), named ``pixels-test``, that runs itself in numpy
(``Backbone.runner``): indexing, the ``Embedder``, ``SearchEngine`` and the web app run exactly as they run
with the CNN, only the network is replaced, and no TensorFlow is imported.  An index built with it records
``pixels-test`` in its manifest, so an engine opened on it (in this process) embeds its queries with it too.

Deterministic and content-only: an image's 8 x 8 grid of colour means, centred on grey, projected to
``DIM`` dimensions by a fixed Gaussian matrix (a random projection keeps cosines, roughly).  An image and
its mild edits (resized, re-encoded, cropped by a few percent) have nearly the same grid, so they stay
close; unrelated pictures do not.  It knows nothing of what a picture shows: a test of what the model's
neighbours mean (a cat is a cat, flags go with flags) keeps the real model.

Registered in the test process by tests/conftest.py, and in a child process started with
``tests.helpers.fake_model_env()`` (tests/child_site/sitecustomize.py); any other child, a Spark executor
for one, knows the real models only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgsearch.indexer.model.backbones import Backbone, BackboneError, BackboneSpec

NAME = "pixels-test"
INPUT_SIZE = 64  # pixels a side, as decoded for it (the CNN's is 224): block means need no more
GRID = 8  # cells a side
DIM = 128
SEED = 20240229
# a near-duplicate threshold for it: a photo's mild edits score 0.95 to 1 against it, two different photos
# at most 0.89 (tests/indexer/test_pixel_model.py measures both); the CNN's are about 0.85 and 0.5
DUP_THRESHOLD = 0.92


class PixelProjection:
    """(n, S, S, 3) uint8 -> (n, DIM) float32: cell means in [-1, 1], times a fixed (GRID*GRID*3, DIM) matrix."""

    description = f"numpy pixel projection ({GRID}x{GRID} cells -> {DIM}, seed {SEED}; the tests' fake model)"

    def __init__(self):
        rng = np.random.default_rng(SEED)
        cells = GRID * GRID * 3
        self.matrix = (rng.standard_normal((cells, DIM)) / np.sqrt(cells)).astype(np.float32)  # (192, D)
        self.calls = 0  # batches run: tests count the model's work with it

    def __call__(self, images: np.ndarray) -> np.ndarray:
        n, size = len(images), images.shape[1]
        cell = size // GRID
        x = np.asarray(images, np.float32).reshape(n, GRID, cell, GRID, cell, 3).mean(axis=(2, 4))  # (n, 8, 8, 3)
        self.calls += 1
        return (x.reshape(n, -1) / np.float32(127.5) - np.float32(1.0)) @ self.matrix  # (n, D)


def _no_graph():
    raise BackboneError(f"{NAME} is the tests' fake model: it has no Keras graph (features, classifier, "
                        "feature maps); a test of the network uses efficientnet-lite0")


def _load(spec: BackboneSpec, weights: str | None, cache_dir: Path) -> Backbone:
    if weights is not None:
        raise BackboneError(f"{NAME} has no weights to load, got {weights!r}")
    return Backbone(spec, f"seed {SEED}", f"seed-{SEED}", _no_graph,
                    lambda x: np.asarray(x, np.float32) / np.float32(127.5) - np.float32(1.0), runner=PixelProjection())


# score_bands: it stands in for efficientnet-lite0 on the page, whose results carry the measured bands
SPEC = BackboneSpec(NAME, INPUT_SIZE, DIM, f"{GRID}x{GRID} cell means, (x - 127.5) / 127.5, seeded projection",
                    _load, ("", ""), score_bands=True)
