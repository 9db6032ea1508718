"""The shards' vectors in the search space, read shard by shard for building and tuning.

A build picks rows (the training sample, the tuning queries) and finds the
tuning queries' exact neighbours by reading every shard.  Here they are read
in this process; a fill that runs where the shards are (Spark executors,
``indexer/spark/fill.py``) may do both there instead, with the same
results: ``picker(fill)`` and ``exact_finder(fill)`` say which.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of


def iter_vectors(store: EmbeddingStore, shards: Sequence[str], manifest: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids (s,), search-space vectors (s, d)) one shard at a time."""
    from imgsearch.indexer.folder.whitening import search_space

    for name in shards:
        table = store.read_table([name], ["id", "embedding"])
        yield table.column("id").to_numpy(), search_space(embeddings_of(table), store.root, manifest)


def pick_vectors(store, shards, manifest, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the rows at sorted global ``positions`` (one pass over the shards)."""
    ids, vecs, start = [], [], 0
    for shard_ids, vectors in iter_vectors(store, shards, manifest):
        lo, hi = np.searchsorted(positions, [start, start + len(shard_ids)])
        local = positions[lo:hi] - start
        ids.append(shard_ids[local])
        vecs.append(vectors[local])
        start += len(shard_ids)
    return np.concatenate(ids), np.vstack(vecs).astype(np.float32)


def exact_over(store, shards, manifest, queries: np.ndarray, query_ids: np.ndarray, graph: bool = False):
    """``ann.ExactNeighbours`` of ``queries`` over every row of ``shards``; ``graph``: over the rows a graph
    index holds before its held-out rows (``ann.held_out``)."""
    from imgsearch.indexer import ann

    exact = ann.ExactNeighbours(queries, query_ids)
    for ids, vectors in iter_vectors(store, shards, manifest):
        if graph:
            kept = ~ann.held_out(ids)
            ids, vectors = ids[kept], vectors[kept]
        exact.add(ids, vectors)
    return exact


def exact_neighbours(store, shards, manifest, queries: np.ndarray, query_ids: np.ndarray, graph: bool = False):
    """(q, k) ids of the exact nearest neighbours of ``queries`` over ``shards``, each query's own row left out."""
    return exact_over(store, shards, manifest, queries, query_ids, graph).result()


def picker(fill):
    """``pick_vectors``, or the fill's own (rows picked where the shards are)."""
    return getattr(fill, "pick_vectors", None) or pick_vectors


def exact_finder(fill):
    """``exact_neighbours``, or the fill's own (each part of the shards searched where it is)."""
    return getattr(fill, "exact_neighbours", None) or exact_neighbours
