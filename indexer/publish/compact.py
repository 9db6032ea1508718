"""Shard compaction: the small shards incremental runs leave, merged into few; ids and row order unchanged.

Every ``imgsearch index`` run that adds a few images writes at least one
shard, so a folder updated daily holds hundreds, and whatever reads the whole
index (opening it, building FAISS, tuning) opens every one.  After a publish,
once ``COMPACT_AT`` shards hold under ``SMALL`` of the shard size, runs of
consecutive small shards are merged into shards of at most the shard size,
each in the place of the run it replaces.  The rows keep their order and
their ids, so the FAISS index, heads and whitening stay valid: only the
manifest's list of shards changes.  The merged shards are written
atomically before the manifest names them, and the ones they replace are
retired (deleted one version later, as for any rewrite), so a reader of the
version before still finds its files.
"""

from __future__ import annotations

import logging

from imgsearch.indexer.folder.store import EmbeddingStore

log = logging.getLogger(__name__)

SMALL = 0.5  # a shard under half the shard size is small
COMPACT_AT = 8  # small shards a folder may hold before publishing merges them


def plan_compaction(rows: list[int], shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive small shards to merge, each merged shard at most ``shard_size`` rows."""
    small = [n < SMALL * shard_size for n in rows]
    if sum(small) < COMPACT_AT:
        return []
    groups: list[tuple[int, int]] = []
    start, total = None, 0
    for i, n in enumerate(rows):
        if start is not None and (not small[i] or total + n > shard_size):  # the run (or this merged shard) ends
            if i - start > 1:
                groups.append((start, i))
            start = None
        if small[i]:
            if start is None:
                start, total = i, 0
            total += n
    if start is not None and len(rows) - start > 1:
        groups.append((start, len(rows)))
    return groups


def compact_shards(store: EmbeddingStore, manifest: dict, shard_size: int) -> dict:
    """Merge the folder's small shards (see the module's docstring); returns the manifest, published if changed."""
    shards = list(manifest["shards"])
    groups = plan_compaction(store.shard_rows(shards), shard_size)
    if not groups:
        return manifest
    merged, retired = [], []
    last = 0
    for start, stop in groups:
        merged.extend(shards[last:start])
        merged.append(store.write_table(store.read_table(shards[start:stop]).combine_chunks()))
        retired.extend(shards[start:stop])
        last = stop
    merged.extend(shards[last:])
    log.info("merged %d small shards into %d", len(retired), len(groups))
    return store.publish(dict(manifest, shards=merged), retired=retired)
