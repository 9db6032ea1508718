"""Building the FAISS index over the shards and publishing a new version of the index folder.

A new version is built beside the served one and switched to by replacing
the manifest, so a reader never sees a half-written index.  When the index
type stays the same, the new version is the old index with the retired
shards' ids removed and the new shards' vectors added: a trained index is
never retrained for an incremental run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from typing import Iterator, Sequence

import numpy as np

from indexer import ann
from indexer.errors import InvalidInputError
from indexer.folder.store import (
    EmbeddingStore,
    IndexFormatError,
    embeddings_of,
    library_versions,
)

log = logging.getLogger(__name__)


TUNING_QUERIES = 500  # held-back queries for recall tuning: +-1 % on recall@10


RETUNE_GROWTH = 0.1  # re-tune when the count moved by more than this since the last tuning


REBUILD_GROWTH = 2.0  # re-plan the index when the count grew or shrank by this factor since it was built


def resolve_options(manifest: dict, overrides: dict | None = None) -> ann.AnnOptions:
    """Options to build with: ``overrides``, else those the index was last built with, else defaults."""
    stored = (manifest.get("ann") or {}).get("options")
    return replace(ann.AnnOptions(**stored) if stored else ann.AnnOptions(), **(overrides or {}))


def options_changed(manifest: dict, options: ann.AnnOptions) -> bool:
    """True if the index was built before, with other options (so it must be rebuilt now)."""
    stored = (manifest.get("ann") or {}).get("options")
    return stored is not None and stored != asdict(options)


def _space_key(manifest: dict):
    """What the indexed vectors are: a change means every vector changes and the index is rebuilt."""
    return (manifest["dim"], (manifest.get("whitening") or {}).get("file"))


def iter_vectors(store: EmbeddingStore, shards: Sequence[str], manifest: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids (s,), search-space vectors (s, d)) one shard at a time."""
    from indexer.folder.whitening import search_space

    for name in shards:
        table = store.read_table([name], ["id", "embedding"])
        yield table.column("id").to_numpy(), search_space(embeddings_of(table), store.root, manifest)


def _pick(store, shards, manifest, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the rows at sorted global ``positions`` (one pass over the shards)."""
    ids, vecs, start = [], [], 0
    for shard_ids, vectors in iter_vectors(store, shards, manifest):
        lo, hi = np.searchsorted(positions, [start, start + len(shard_ids)])
        local = positions[lo:hi] - start
        ids.append(shard_ids[local])
        vecs.append(vectors[local])
        start += len(shard_ids)
    return np.concatenate(ids), np.vstack(vecs).astype(np.float32)


def _all_ids(store: EmbeddingStore, shards: Sequence[str]) -> np.ndarray:
    """(n,) the ids of every row, in shard order (8 bytes a row: read even at millions)."""
    return store.read_table(list(shards), ["id"]).column("id").to_numpy() if shards else np.empty(0, np.int64)


def _plan(options: ann.AnnOptions, prev: dict, n: int, d: int, same_space: bool) -> str:
    if options.index_type != "auto":
        return ann.with_rerank(options.index_type, True) if options.rerank else options.index_type
    old, built_n = prev.get("factory"), prev.get("built_n", 0)
    if (same_space and old and prev.get("options") == asdict(options)
            and built_n / REBUILD_GROWTH <= n <= built_n * REBUILD_GROWTH
            and ann.estimate_memory(old, n, d) <= options.max_memory):
        return old  # small changes keep the trained index; doubling re-plans it
    return ann.with_rerank(ann.choose_index(n, d, options.max_memory, options.rerank), options.rerank)


def publish_index(store: EmbeddingStore, manifest: dict, shards: list[str], retired: Sequence[str] = (),
                  *, options: ann.AnnOptions | None = None, rebuild: bool = False) -> dict:
    """Build the FAISS index (and every head's) over ``shards``, then switch the manifest to them.

    ``retired``: shards this version replaces; they are deleted once it is published.
    ``options``: how to choose and tune the index (default: as last time).
    ``rebuild``: build from scratch even if the old index could be updated.
    """
    from indexer.folder.heads import list_heads, load_head
    from indexer.publish.head_indexes import build_head_index

    started = time.perf_counter()
    options = options or resolve_options(manifest)
    prev = manifest.get("ann") or {}
    ids = _all_ids(store, shards)  # (n,) every row's id, in shard order
    n = len(ids)
    d = (manifest.get("whitening") or {}).get("dim", manifest["dim"])
    same_space = prev.get("space") == list(_space_key(manifest))
    factory = _plan(options, prev, n, d, same_space)

    # the old index (and its training) stays valid while the vectors and the index type do;
    # a graph is tuned while it is built (see _build), so re-tuning one means rebuilding it
    reusable = (same_space and prev.get("factory") == factory and not rebuild
                and not (ann.is_graph(factory) and _needs_tuning(prev, n, options.target_recall)))
    index = _update(store, manifest, shards) if reusable and manifest.get("index_file") else None
    incremental = index is not None
    trained_file = prev.get("trained_file") if reusable else None
    built_tuning = None
    if index is None:
        index, trained_file, built_tuning = _build(store, manifest, shards, ids, factory, d, options, trained_file)

    if index.ntotal != n:
        raise IndexFormatError(f"built an index of {index.ntotal} vectors over {n} rows in {store.root}")
    generation = manifest.get("generation", 0) + 1

    tuning, tuned_n = (prev.get("tuning"), prev.get("tuned_n", 0)) if incremental else (None, 0)
    if ann.is_exact(factory):
        tuning, tuned_n = ann.Tuning({}, 1.0, 0.0, 0, options.target_recall).to_dict(), n
    elif built_tuning is not None:
        tuning, tuned_n = built_tuning.to_dict(), n
    elif not incremental or _needs_tuning(prev, n, options.target_recall):
        tuning, tuned_n = _tune(store, manifest, shards, ids, index, options.target_recall).to_dict(), n
    else:
        ann.set_search_params(index, tuning["params"])

    if len(np.unique(ids)) != n:
        raise IndexFormatError(f"duplicate ids in the shards of {store.root}: the index is damaged")
    index_file = store.write_index(index, generation)
    # every shard name up to shard_high belongs to this or an earlier version: never adopt one again
    shard_high = max([*shards, *retired, manifest.get("shard_high", "")])
    next_id = max(int(ids.max()) + 1 if n else 0, manifest.get("next_id", 0))
    info = {
        "factory": factory, "options": asdict(options), "space": list(_space_key(manifest)),
        "trained_file": trained_file, "built_n": prev.get("built_n", n) if incremental else n,
        "tuned_n": tuned_n, "tuning": tuning, "device": "cpu",
        "memory_bytes": ann.estimate_memory(factory, n, d),
        "seconds": round(time.perf_counter() - started, 3),
    }
    manifest = dict(manifest, shards=shards, count=n, index_file=index_file, generation=generation,
                    search_dim=int(d), index_type=factory, ann=info, versions=library_versions(),
                    shard_high=shard_high, next_id=next_id)
    for name in list_heads(store.root):  # head-aware search indexes follow the main one
        build_head_index(store.root, load_head(store.root, name, manifest), manifest)
    manifest = store.publish(manifest, retired=retired)  # also deletes what no served version needs
    log.info("published %s over %d vectors (%s, recall@10 %.3f) in %.1f s", factory, n,
             "updated" if incremental else "built", tuning["recall_at_10"], info["seconds"])
    return manifest


def _needs_tuning(prev: dict, n: int, target: float) -> bool:
    """True unless the last tuning was for this target and about this many vectors."""
    tuning, tuned_n = prev.get("tuning"), prev.get("tuned_n", 0)
    return (tuning is None or tuning.get("target_recall") != target
            or abs(n - tuned_n) > RETUNE_GROWTH * max(tuned_n, 1))


def _update(store, manifest, shards):
    """The served index with the retired shards' rows removed and new shards' rows added, or None."""
    old_shards = manifest.get("shards") or []
    old, new = set(old_shards), set(shards)
    gone = [s for s in old_shards if s not in new]
    added = [s for s in shards if s not in old]
    try:
        index = store.read_index(manifest["index_file"])
        gone_ids = store.read_table(gone, ["id"]).column("id").to_numpy() if gone else np.empty(0, np.int64)
    except IndexFormatError:  # damaged: build anew from the shards
        return None
    if not ann.remove_ids(index, gone_ids):
        return None  # this index type cannot remove: rebuild it (from the trained state, if any)
    for ids, vectors in iter_vectors(store, added, manifest):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    log.info("updated the index: %d removed, %d shards added", len(gone_ids), len(added))
    return index


def _build(store, manifest, shards, all_ids, factory, d, options, trained_file):
    """A new index of type ``factory`` over all shards; reuses ``trained_file`` if given."""
    index = None
    if trained_file:
        try:
            index = store.read_index(trained_file)
        except IndexFormatError:
            index, trained_file = None, None
    if index is None:
        index, trained_file = ann.new_index(factory, d), None
    index, device = ann.to_gpu_if_available(index, options.use_gpu)
    if not index.is_trained:
        positions = ann.training_positions(all_ids, factory)
        _, sample = _pick(store, shards, manifest, positions)  # (t, d)
        try:
            ann.train(index, sample)
        except RuntimeError as exc:
            raise InvalidInputError(f"cannot train index type {factory!r} on {len(all_ids)} vectors: "
                             f"{str(exc).splitlines()[0]}; choose a smaller one or --index-type auto") from exc
        trained_file = store.write_index(ann.to_cpu(index, device), manifest.get("generation", 0) + 1,
                                         prefix="trained")
    t0 = time.perf_counter()
    graph = ann.is_graph(factory)
    later = []  # a graph's held-out rows (~3 %): added once it is tuned without them
    for ids, vectors in iter_vectors(store, shards, manifest):
        if graph:
            held = ann.held_out(ids)
            later.append((ids[held], vectors[held]))
            ids, vectors = ids[~held], vectors[~held]
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    tuning = _tune(store, manifest, shards, all_ids, index, options.target_recall, graph=True) if graph else None
    for ids, vectors in later:
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    log.info("built %s over %d vectors on %s in %.1f s", factory, len(all_ids), device.upper(),
             time.perf_counter() - t0)
    return ann.to_cpu(index, device), trained_file, tuning


def _tune(store, manifest, shards, all_ids, index, target, graph: bool = False) -> ann.Tuning:
    """Tune search parameters on held-back queries from the indexed vectors, against exact search.

    The queries are indexed vectors the index was not trained on
    (``ann.held_out``).  ``graph``: the index holds every row but the held-out
    ones (see ``ann.is_graph``); exact search is then over the same rows.
    """
    positions = ann.tuning_positions(all_ids, min(TUNING_QUERIES, len(all_ids)))
    query_ids, queries = _pick(store, shards, manifest, positions)
    exact = ann.ExactNeighbours(queries, query_ids)
    for ids, vectors in iter_vectors(store, shards, manifest):
        if graph:
            kept = ~ann.held_out(ids)
            ids, vectors = ids[kept], vectors[kept]
        exact.add(ids, vectors)
    return ann.tune(index, queries, query_ids, exact.result(), target)
