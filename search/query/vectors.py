"""A query vector as callers send it (a list, an array, JSON numbers), checked against the index's dimension."""

from __future__ import annotations

import numpy as np

from imgsearch.indexer.vectors import l2_normalize
from imgsearch.search.errors import InvalidVectorError


def check_query_vector(vector, dim: int, backbone: str) -> np.ndarray:
    """``vector`` as a (dim,) float32 unit vector (scaled before squaring, so any finite magnitude normalises),
    or InvalidVectorError saying what is wrong with it (another length, NaN or infinity, all zeros)."""
    try:
        v = np.asarray(vector, dtype=np.float64)  # float64: 3e38s and 1e-300s keep their direction
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int too large for a float
        raise InvalidVectorError(f"query vector must be {dim} finite numbers: {exc}") from None
    if v.ndim != 1 or v.shape[0] != dim:
        raise InvalidVectorError(f"query vector has shape {v.shape}, this index ({backbone}) needs ({dim},)")
    if not np.all(np.isfinite(v)):
        raise InvalidVectorError("query vector contains NaN or infinity")
    if not v.any():
        raise InvalidVectorError("query vector is all zeros: it has no direction to search in")
    return l2_normalize(v[None])[0]
