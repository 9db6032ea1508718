"""Publishing, stage 2: the shards hold a publishable set of rows — checked before anything is built.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError

SHOWN = 5  # duplicate ids named in the message


def check_shards(store: EmbeddingStore, shards: Sequence[str]) -> np.ndarray:
    """(n,) every row's id, in shard order, or IndexFormatError naming the shards that share ids.

    8 bytes a row, read even at millions, long before FAISS trains anything,
    and checked a shard at a time: beside them, one byte per id up to the
    largest (``duplicate_ids``), not a sorted copy of them all.
    """
    counts = store.shard_rows(shards) if shards else []
    ids, at = np.empty(sum(counts), np.int64), 0
    for name, count in zip(shards, counts):
        shard_ids = store.read_table([name], ["id"]).column("id").to_numpy()
        if len(shard_ids) != count:
            raise IndexFormatError(f"shard {name} of {store.root} holds {len(shard_ids)} rows, its footer says "
                                   f"{count}: the index is damaged; re-index the images into a new folder")
        ids[at:at + count] = shard_ids
        at += count
    duplicated = duplicate_ids(ids, counts)
    if len(duplicated):
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        holders = sorted({name for name, lo, hi in zip(shards, starts[:-1], starts[1:])
                          if np.isin(ids[lo:hi], duplicated).any()})
        shown = ", ".join(str(i) for i in duplicated[:SHOWN]) + (" ..." if len(duplicated) > SHOWN else "")
        raise IndexFormatError(
            f"duplicate ids in the shards of {store.root}: {len(duplicated)} ids ({shown}) are stored more "
            f"than once, in {', '.join(holders)}; the index is damaged and cannot be repaired in place: "
            "re-index the images into a new folder")
    return ids


def duplicate_ids(ids: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """The sorted ids that occur more than once in ``ids`` (runs of ``counts`` rows: the shards).

    Ids are numbered from 0 and never reused, so they are dense: a byte per id
    up to the largest marks those seen, shard by shard.  Ids far sparser than
    that (or negative: a damaged shard) are checked by sorting a copy.
    """
    if not len(ids):
        return ids[:0]
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= 4 * len(ids) + (1 << 20):
        unique, times = np.unique(ids, return_counts=True)
        return unique[times > 1]
    seen, found, at = np.zeros(high + 1, bool), [], 0
    for count in counts:
        unique, times = np.unique(ids[at:at + count], return_counts=True)  # one shard's
        found += [unique[times > 1], unique[seen[unique]]]
        seen[unique] = True
        at += count
    return np.unique(np.concatenate(found))


def check_built(index, n: int, store: EmbeddingStore) -> None:
    """The built index holds one vector per row."""
    if index.ntotal != n:
        raise IndexFormatError(f"built an index of {index.ntotal} vectors over {n} rows in {store.root}")
