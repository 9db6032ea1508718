"""A query vector as callers send it (a list, an array, JSON numbers), checked against the index's dimension."""

from __future__ import annotations

import numpy as np

from imgsearch.search.errors import InvalidVectorError


def check_query_vector(vector, dim: int, backbone: str) -> np.ndarray:
    """A (dim,) float32 copy of ``vector``, or InvalidVectorError saying what is wrong with it."""
    try:
        with np.errstate(over="ignore"):  # a float beyond float32 becomes inf, refused below
            v = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int too large for a float
        raise InvalidVectorError(f"query vector must be {dim} finite numbers: {exc}") from None
    if v.ndim != 1 or v.shape[0] != dim:
        raise InvalidVectorError(f"query vector has shape {v.shape}, this index ({backbone}) needs ({dim},)")
    if not np.all(np.isfinite(v)):
        raise InvalidVectorError("query vector contains NaN or infinity")
    return v
