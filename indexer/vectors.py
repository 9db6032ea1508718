"""The single place where embeddings are L2-normalised."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit length: (n, d) -> (n, d). Zero rows stay zero."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, d), got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)  # (n, 1)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
