"""The shards' vectors in the search space, read shard by shard for building and tuning.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from indexer.folder.store import EmbeddingStore, embeddings_of


def iter_vectors(store: EmbeddingStore, shards: Sequence[str], manifest: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids (s,), search-space vectors (s, d)) one shard at a time."""
    from indexer.folder.whitening import search_space

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
