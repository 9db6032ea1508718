"""Vector maths: the single place where embeddings are L2-normalised, and exact (flat) FAISS search."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit length: (n, d) -> (n, d). Zero rows stay zero."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, d), got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)  # (n, 1)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


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
