"""Seeded synthetic embeddings shaped like a CNN's, for benchmarks and tests of the FAISS index.

Real image embeddings are non-negative (ReLU before pooling), unit length,
clustered by content and of low intrinsic dimension.  These are made the
same way: points of a Gaussian mixture in a ``latent``-dimensional space
(``clusters`` centres, within-cluster spread ``spread``), mapped to ``d``
dimensions by one fixed random linear layer and a ReLU, then L2-normalised.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from indexer.vectors import l2_normalize


class ClusteredEmbeddings:
    def __init__(self, d: int = 1280, *, clusters: int = 1000, latent: int = 64, spread: float = 0.5,
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        self.d = d
        self.centres = rng.standard_normal((clusters, latent)).astype(np.float32)  # (C, L)
        self.layer = (rng.standard_normal((latent, d)) / math.sqrt(latent)).astype(np.float32)  # (L, d)
        self.bias = np.float32(-0.5)  # makes ~70 % of the features zero, as after a ReLU
        self.spread = spread

    def sample(self, n: int, seed: int) -> np.ndarray:
        """(n, d) float32 unit vectors; the same seed gives the same vectors."""
        rng = np.random.default_rng(seed)
        c = rng.integers(len(self.centres), size=n)
        z = self.centres[c] + self.spread * rng.standard_normal((n, self.centres.shape[1]), dtype=np.float32)
        return l2_normalize(np.maximum(z @ self.layer + self.bias, 0))  # (n, d)

    def chunks(self, n: int, seed: int, chunk: int = 50_000) -> Iterator[np.ndarray]:
        """n vectors in chunks of ``chunk`` (chunk i is seeded with seed + i)."""
        for i, start in enumerate(range(0, n, chunk)):
            yield self.sample(min(chunk, n - start), seed * 1_000_003 + i)
