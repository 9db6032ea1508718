"""Retrieval quality measured on an index whose images carry labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.faiss_index import build_flat_index, search_index
from indexer.store import EmbeddingStore, embeddings_of


@dataclass
class PrecisionReport:
    k: int
    images: int
    labels: int
    precision: float  # mean over queries of (neighbours sharing the query's label) / k
    per_label: dict[str, float]

    def to_dict(self) -> dict:
        return {"k": self.k, "images": self.images, "labels": self.labels,
                "precision_at_k": self.precision, "per_label": self.per_label}


def leave_one_out_precision(vectors: np.ndarray, labels, k: int = 10) -> PrecisionReport:
    """Leave-one-out precision@k with exact cosine search.

    vectors (n, D) unit rows, labels (n,).  Each image queries all the others:
    the query itself is excluded by id, not by rank, so exact duplicates count.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if len(vectors) != n:
        raise ValueError(f"{len(vectors)} vectors but {n} labels")
    if n <= k:
        raise ValueError(f"need more than k={k} images, got {n}")
    ids = np.arange(n, dtype=np.int64)
    _, nn = search_index(build_flat_index(ids, vectors), vectors, k + 1)  # (n, k+1)
    keep = nn != ids[:, None]
    # drop the query wherever it landed; if it was not retrieved, drop the last neighbour
    nn = np.array([row[m][:k] for row, m in zip(nn, keep)])  # (n, k)
    hits = (labels[nn] == labels[:, None]).mean(axis=1)  # (n,)
    per_label = {str(c): float(hits[labels == c].mean()) for c in np.unique(labels)}
    return PrecisionReport(k, n, len(per_label), float(hits.mean()), per_label)


def index_precision(index_dir, k: int = 10) -> PrecisionReport:
    """Leave-one-out precision@k of a published index, by its ``label`` column."""
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["label", "embedding"])
    return leave_one_out_precision(embeddings_of(table), table.column("label").to_numpy(zero_copy_only=False), k)
