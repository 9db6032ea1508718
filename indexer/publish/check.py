"""Publishing, stage 2: the shards hold a publishable set of rows — checked before anything is built.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from indexer.folder.store import EmbeddingStore, IndexFormatError

SHOWN = 5  # duplicate ids named in the message


def check_shards(store: EmbeddingStore, shards: Sequence[str]) -> np.ndarray:
    """(n,) every row's id, in shard order, or IndexFormatError naming the shards that share ids.

    8 bytes a row: read even at millions, and long before FAISS trains anything.
    """
    per_shard = [store.read_table([name], ["id"]).column("id").to_numpy() for name in shards]
    ids = np.concatenate(per_shard) if per_shard else np.empty(0, np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    duplicated = unique[counts > 1]
    if len(duplicated):
        holders = sorted({name for name, shard_ids in zip(shards, per_shard)
                          if np.isin(shard_ids, duplicated).any()})
        shown = ", ".join(str(i) for i in duplicated[:SHOWN]) + (" ..." if len(duplicated) > SHOWN else "")
        raise IndexFormatError(
            f"duplicate ids in the shards of {store.root}: {len(duplicated)} ids ({shown}) are stored more "
            f"than once, in {', '.join(holders)}; the index is damaged and cannot be repaired in place: "
            "re-index the images into a new folder")
    return ids


def check_built(index, n: int, store: EmbeddingStore) -> None:
    """The built index holds one vector per row."""
    if index.ntotal != n:
        raise IndexFormatError(f"built an index of {index.ntotal} vectors over {n} rows in {store.root}")
