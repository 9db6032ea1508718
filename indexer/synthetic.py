"""Seeded synthetic embeddings shaped like a CNN's, for benchmarks and tests of the FAISS index.

Real image embeddings are non-negative (ReLU before pooling), unit length,
clustered by content and of low intrinsic dimension.  These are made the
same way: points of a Gaussian mixture in a ``latent``-dimensional space
(``clusters`` centres, within-cluster spread ``spread``), mapped to ``d``
dimensions by one fixed random linear layer and a ReLU, then L2-normalised.

``plant_near_duplicates`` turns some of them into groups of near-duplicates
(the same picture, edited): a base vector and 1-4 others, each a unit vector
at a chosen cosine (0.96-0.995) from the base, for tests and benchmarks of
``imgsearch duplicates``.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from imgsearch.indexer.vectors import l2_normalize


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
        h = z @ self.layer + self.bias  # (n, d)
        out = np.maximum(h, 0)
        dead = ~out.any(axis=1)  # every feature below the ReLU: keep the strongest, as a CNN's pooling would
        out[dead, np.argmax(h[dead], axis=1)] = 1
        return l2_normalize(out)  # (n, d) unit vectors, never a zero row

    def chunks(self, n: int, seed: int, chunk: int = 50_000) -> Iterator[np.ndarray]:
        """n vectors in chunks of ``chunk`` (chunk i is seeded with seed + i)."""
        for i, start in enumerate(range(0, n, chunk)):
            yield self.sample(min(chunk, n - start), seed * 1_000_003 + i)


def plant_near_duplicates(vectors: np.ndarray, seed: int, *, share: float = 0.1, sizes: tuple[int, int] = (2, 5),
                          scores: tuple[float, float] = (0.96, 0.995)) -> np.ndarray:
    """Overwrite rows of ``vectors`` (n, d) unit vectors with planted groups of near-duplicates, in place.

    About ``share`` of the rows end up in groups of ``sizes[0]``-``sizes[1]``
    consecutive rows: the first is the group's base, each other one is
    ``s * base + sqrt(1 - s^2) * u`` with ``u`` a random unit vector orthogonal to
    the base and ``s`` uniform in ``scores``: its cosine with the base is exactly
    ``s``, with another member about the product of theirs (at least ~0.92).
    Returns (n,) int64: the row of its group's base for every planted row, -1 for the others.
    """
    rng = np.random.default_rng(seed)
    n, d = vectors.shape
    lo, hi = sizes
    mean_size = (lo + hi) / 2
    start_p = share / (mean_size - share * (mean_size - 1))  # P(a group starts at a row), for ~share in groups
    group = np.full(n, -1, np.int64)
    i = 0
    starts = rng.random(n) < start_p
    lengths = rng.integers(lo, hi + 1, size=n)
    while i < n:
        k = int(lengths[i])
        if not starts[i] or i + k > n:
            i += 1
            continue
        base = vectors[i].astype(np.float64)
        u = rng.standard_normal((k - 1, d))
        u -= np.outer(u @ base, base)  # orthogonal to the base
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        s = rng.uniform(*scores, size=(k - 1, 1))
        vectors[i + 1:i + k] = s * base + np.sqrt(1 - s * s) * u
        group[i:i + k] = i
        i += k
    return group


def synthetic_manifest(d: int) -> dict:
    """The manifest of a new, empty index of synthetic d-dimensional vectors (no model made them), for
    benchmarks that write shards themselves and publish them."""
    return {"backbone": {"name": "synthetic", "weights": None, "input_size": 0, "preprocessing": "", "resize": ""},
            "dim": d, "metric": "cosine", "count": 0, "shards": [], "index_file": None, "generation": 0}
