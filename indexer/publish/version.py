"""Publishing a new version of the index folder: plan -> check -> build -> tune -> write -> heads -> publish.

A new version is built beside the served one and switched to by replacing
the manifest, last, so a reader never sees a half-written index.  When the
index type stays the same, the new version is the old index with the
retired shards' ids removed and the new shards' vectors added: a trained
index is never retrained for an incremental run.  Each stage is its own
module and can be run alone: ``plan``, ``check``, ``build``, ``tune``,
``head_indexes``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Sequence

import numpy as np

from imgsearch.indexer import ann
from imgsearch.indexer.folder.ondisk_lists import on_disk_lists
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.versions import library_versions
from imgsearch.indexer.publish.build import build_index, update_index
from imgsearch.indexer.publish.check import check_built, check_shards
from imgsearch.indexer.progress import step
from imgsearch.indexer.publish.head_indexes import rebuild_head_indexes
from imgsearch.indexer.publish.ondisk import Fill
from imgsearch.indexer.publish.plan import (  # noqa: F401  (resolve_options, options_changed: imported from here)
    BuildPlan,
    options_changed,
    plan_build,
    resolve_options,
    space_key,
)
from imgsearch.indexer.publish.tune import tuning_for

log = logging.getLogger(__name__)


def publish_index(store: EmbeddingStore, manifest: dict, shards: list[str], retired: Sequence[str] = (),
                  *, options: ann.AnnOptions | None = None, rebuild: bool = False, fill: Fill | None = None) -> dict:
    """Build the FAISS index (and every head's) over ``shards``, then switch the manifest to them.

    ``retired``: shards this version replaces; they are deleted once it is published.
    ``options``: how to choose and tune the index (default: as last time).
    ``rebuild``: build from scratch even if the old index could be updated.
    ``fill``: who fills an on-disk index's partial indexes (``ondisk.Fill``; None: this process).
    Given one (Spark executors), an index type that can be on disk is, unless the options say never.
    """
    started = time.perf_counter()
    ids = check_shards(store, shards)  # (n,) every row's id, in shard order; before anything is built
    plan = plan_build(manifest, len(ids), options, rebuild, distributed=fill is not None)
    index = update_index(store, manifest, shards) if plan.update and not plan.on_disk else None
    incremental = index is not None
    trained_file, built_tuning = plan.trained_file, None
    if index is None:
        with step(f"building the search index ({plan.factory}, {plan.n:,} vectors)", leave=False):
            index, trained_file, built_tuning = build_index(store, manifest, shards, ids, plan, fill)
        # an on-disk index filled anew from the same trained file is what an update would have made
        incremental = bool(plan.update and plan.on_disk and plan.trained_file and trained_file == plan.trained_file)
    check_built(index, plan.n, store)
    with step("tuning the search index for recall", leave=False):
        tuning, tuned_n = tuning_for(store, manifest, shards, ids, index, plan, incremental, built_tuning, fill)

    generation = manifest.get("generation", 0) + 1
    index_file = store.write_index(index, generation)
    info = {
        "factory": plan.factory, "options": asdict(plan.options), "space": list(space_key(manifest)),
        "trained_file": trained_file,
        "built_n": (manifest.get("ann") or {}).get("built_n", plan.n) if incremental else plan.n,
        "tuned_n": tuned_n, "tuning": tuning, "device": "cpu", "memory_bytes": plan.memory_bytes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if (lists := on_disk_lists(index)) is not None:  # searched memory-mapped, on CPU (search/opening.py)
        info.update(on_disk=True, lists_file=lists.filename)
    manifest = new_version(manifest, shards, retired, ids, plan, index_file, generation, info)
    rebuild_head_indexes(store.root, manifest)  # head-aware search indexes follow the main one
    manifest = store.publish(manifest, retired=retired)  # also deletes what no served version needs
    log.info("published %s over %d vectors (%s, recall@10 %.3f) in %.1f s", plan.factory, plan.n,
             "updated" if incremental else "built", tuning["recall_at_10"], info["seconds"])
    return manifest


def new_version(manifest: dict, shards: list[str], retired: Sequence[str], ids: np.ndarray, plan: BuildPlan,
                index_file: str, generation: int, info: dict) -> dict:
    """The manifest of the version being published (not yet written)."""
    # every shard name up to shard_high belongs to this or an earlier version: never adopt one again
    shard_high = max([*shards, *retired, manifest.get("shard_high", "")])
    next_id = max(int(ids.max()) + 1 if len(ids) else 0, manifest.get("next_id", 0))
    return dict(manifest, shards=shards, count=plan.n, index_file=index_file, generation=generation,
                search_dim=int(plan.d), index_type=plan.factory, ann=info, versions=library_versions(),
                shard_high=shard_high, next_id=next_id)
