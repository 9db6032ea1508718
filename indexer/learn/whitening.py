"""Learning PCA-whitening from embeddings (see ``indexer.folder.whitening`` for the transform).
"""

from __future__ import annotations

import numpy as np

from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.whitening import Whitening


def learn_whitening(vectors: np.ndarray, dim: int | None = None, shrink: float = 0.1,
                    seed: int = 0) -> Whitening:
    """Learn PCA-whitening from (n, D) embeddings, keeping ``dim`` components (default all usable)."""
    from sklearn.decomposition import PCA

    n, d = vectors.shape
    keep = min(dim or d, n - 1, d)
    if keep < 2:
        raise InvalidInputError(f"whitening needs more than 2 embeddings and dim >= 2 (have {n}, dim={dim})")
    pca = PCA(n_components=keep, svd_solver="full" if n * d < 5e7 else "randomized", random_state=seed)
    pca.fit(vectors)
    var = pca.explained_variance_.astype(np.float64)  # (d,)
    scale = 1.0 / np.sqrt(var + shrink * var.mean())
    projection = (pca.components_.T * scale).astype(np.float32)  # (D, d)
    return Whitening(pca.mean_.astype(np.float32), projection)
