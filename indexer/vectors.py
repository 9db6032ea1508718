"""Vector maths: the single place where embeddings are L2-normalised, and exact (flat) FAISS search."""

from __future__ import annotations

import logging

import numpy as np

from imgsearch.indexer.errors import InvalidInputError

log = logging.getLogger(__name__)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit length: (n, d) -> (n, d).  Rows with no direction (all zeros, NaN or
    infinity, see ``undirected_rows``) come back as zeros; callers that take vectors from a user refuse
    those first (``unit_rows``).

    Each row is divided by its largest magnitude before it is squared, in float64: ``[3e38] * 16`` (whose
    squares overflow float32) and ``[1e-300] * 16`` (whose squares underflow float64) normalise like any other.
    """
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, d), got shape {v.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float64: inf, a row without direction
        v = v.astype(np.float64, copy=False)  # exact for float32 input; keeps float64 input's range
        scale = np.max(np.abs(v), axis=1, keepdims=True) if v.shape[1] else np.zeros((len(v), 1))  # (n, 1)
        good = np.isfinite(scale) & (scale > 0) & np.isfinite(v).all(axis=1, keepdims=True)  # (n, 1)
        scaled = np.divide(v, scale, out=np.zeros_like(v), where=good)  # (n, d), largest magnitude 1
        norms = np.linalg.norm(scaled, axis=1, keepdims=True)  # (n, 1), between 1 and sqrt(d)
        out = np.divide(scaled, norms, out=np.zeros_like(scaled), where=good & (norms > 0))
    return out.astype(np.float32)


def undirected_rows(vectors: np.ndarray) -> np.ndarray:
    """(n, d) -> (n,) bool: the rows that cannot be normalised (all zeros, or holding NaN or infinity)."""
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, d), got shape {v.shape}")
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(v).all(axis=1)
    return ~finite | ~(v != 0).any(axis=1)


def why_undirected(vector: np.ndarray) -> str:
    """Why one (d,) row cannot be normalised, as the end of a sentence."""
    v = np.asarray(vector)
    return "holds NaN or infinity" if not np.isfinite(v).all() else "is all zeros (it has no direction)"


class UnnormalisableVectorError(InvalidInputError):
    """A vector that has no direction (all zeros, NaN or infinity) was given where a unit vector is needed."""


def unit_rows(vectors: np.ndarray, names=None) -> np.ndarray:
    """``l2_normalize``, refusing rows that have no direction: UnnormalisableVectorError names the first one
    (``names[i]``, else "row i")."""
    bad = np.flatnonzero(undirected_rows(vectors))
    if len(bad):
        i = int(bad[0])
        name = names[i] if names is not None else f"row {i}"
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UnnormalisableVectorError(f"{name}: the vector {why_undirected(np.asarray(vectors)[i])}{more}: "
                                        "give a vector of finite numbers, not all zero")
    return l2_normalize(vectors)


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def new_flat_index(dim: int):
    """An empty exact inner-product index whose ids are the rows' ids."""
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def add_to_index(index, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add vectors (n, D) float32 under ids (n,) int64."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(ids) != len(vectors) or vectors.shape[1] != index.d:
        raise ValueError(f"need (n, {index.d}) vectors and n ids, got {vectors.shape} and {ids.shape}")
    if len(ids):
        index.add_with_ids(vectors, ids)


def build_flat_index(ids: np.ndarray, vectors: np.ndarray):
    """Exact inner-product index: ids (n,) int64, vectors (n, D) float32."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"need (n, D) vectors, got shape {vectors.shape}")
    index = new_flat_index(vectors.shape[1])
    add_to_index(index, ids, vectors)
    log.info("built exact inner-product index over %d vectors on CPU", len(ids))
    return index


def search_index(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """queries (q, D) -> scores (q, k), ids (q, k); missing neighbours have id -1."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(f"queries must have shape (q, {index.d}), got {queries.shape}")
    return index.search(queries, k)
