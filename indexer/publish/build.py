"""Publishing, stage 3: the FAISS index itself — the served one updated, or a new one trained and filled.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np

from imgsearch.indexer import ann
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.publish.ondisk import Fill, fill_ondisk
from imgsearch.indexer.publish.plan import BuildPlan
from imgsearch.indexer.publish.shard_vectors import iter_vectors, pick_vectors, picker
from imgsearch.indexer.publish.tune import tune_index

log = logging.getLogger(__name__)


def update_index(store, manifest, shards):
    """The served index with the retired shards' rows removed and new shards' rows added, or None.

    None for an on-disk index: the served version maps its lists file, which
    must not change under it; it is filled anew from its trained file instead.
    """
    if (manifest.get("ann") or {}).get("lists_file"):
        return None
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


def build_index(store, manifest, shards, all_ids: np.ndarray, plan: BuildPlan, fill: Fill | None = None):
    """A new index as ``plan`` says over all shards: (index, trained file, tuning made while building or None).

    Starts from ``plan.trained_file`` when it is readable; a graph is tuned
    before its held-out rows are added, so its tuning comes back too.  An
    on-disk plan is trained where the fill trains (``trainer``), filled by
    ``fill`` (None: here) into partial indexes and merged into the folder's
    lists file (``ondisk.fill_ondisk``), on CPU.
    """
    factory, options, trained_file = plan.factory, plan.options, plan.trained_file
    index = None
    if trained_file:
        try:
            index = store.read_index(trained_file)
        except IndexFormatError:
            index, trained_file = None, None
    t0 = time.perf_counter()
    if plan.on_disk:
        if index is None:
            positions = ann.training_positions(all_ids, factory)
            trained_file = trainer(fill)(store, manifest, shards, positions,
                                         functools.partial(train_and_write, manifest, plan))
        index, _ = fill_ondisk(store, manifest, shards, trained_file, fill)
        log.info("built %s on disk over %d vectors in %.1f s", factory, len(all_ids), time.perf_counter() - t0)
        return index, trained_file, None
    if index is None:
        index, trained_file = ann.new_index(factory, plan.d), None
    index, device = ann.to_gpu_if_available(index, options.use_gpu)
    if not index.is_trained:
        positions = ann.training_positions(all_ids, factory)
        _, sample = picker(fill)(store, shards, manifest, positions)  # (t, d)
        train_sample(index, sample, plan)
        trained_file = store.write_index(ann.to_cpu(index, device), manifest.get("generation", 0) + 1,
                                         prefix="trained")
    graph = ann.is_graph(factory)
    later = []  # a graph's held-out rows (~3 %): added once it is tuned without them
    for ids, vectors in iter_vectors(store, shards, manifest):
        if graph:
            held = ann.held_out(ids)
            later.append((ids[held], vectors[held]))
            ids, vectors = ids[~held], vectors[~held]
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    tuning = (tune_index(store, manifest, shards, all_ids, index, options.target_recall, graph=True, fill=fill)
              if graph else None)
    for ids, vectors in later:
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    log.info("built %s over %d vectors on %s in %.1f s", factory, len(all_ids), device.upper(),
             time.perf_counter() - t0)
    return ann.to_cpu(index, device), trained_file, tuning


def train_sample(index, sample: np.ndarray, plan: BuildPlan) -> None:
    """Train ``index`` on ``sample`` (t, d), or InvalidInputError saying what to choose instead."""
    try:
        ann.train(index, sample)
    except RuntimeError as exc:
        raise InvalidInputError(f"cannot train index type {plan.factory!r} on {plan.n} vectors: "
                                f"{str(exc).splitlines()[0]}; choose a smaller one or --index-type auto") from exc


def train_and_write(manifest: dict, plan: BuildPlan, store, sample: np.ndarray) -> str:
    """A new index of ``plan``'s type trained on ``sample`` (t, d), written as the next generation's trained file."""
    index, device = ann.to_gpu_if_available(ann.new_index(plan.factory, plan.d), plan.options.use_gpu)
    train_sample(index, sample, plan)
    return store.write_index(ann.to_cpu(index, device), manifest.get("generation", 0) + 1, prefix="trained")


def train_here(store, manifest: dict, shards, positions: np.ndarray, make_trained) -> str:
    """``make_trained(store, sample)`` on the rows at ``positions``, picked and trained in this process."""
    _, sample = pick_vectors(store, shards, manifest, positions)  # (t, d)
    return make_trained(store, sample)


def trainer(fill):
    """``train_here``, or the fill's own ``train`` (rows picked where the shards are, trained by one of them)."""
    return getattr(fill, "train", None) or train_here
