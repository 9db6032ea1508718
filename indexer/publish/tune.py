"""Publishing, stage 4: search parameters tuned for the target recall, against exact search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgsearch.indexer import ann
from imgsearch.indexer.atomic import atomic_write_faiss, temp_path
from imgsearch.indexer.folder.ondisk_lists import on_disk_lists
from imgsearch.indexer.publish.ondisk import runner
from imgsearch.indexer.publish.plan import BuildPlan, needs_tuning
from imgsearch.indexer.publish.shard_vectors import exact_finder, picker

TUNING_QUERIES = 500  # held-back queries for recall tuning: +-1 % on recall@10


def tune_index(store, manifest, shards, all_ids: np.ndarray, index, target: float,
               graph: bool = False, fill=None) -> ann.Tuning:
    """Tune search parameters on held-back queries from the indexed vectors, against exact search.

    The queries are indexed vectors the index was not trained on
    (``ann.held_out``).  ``graph``: the index holds every row but the held-out
    ones (see ``ann.is_graph``); exact search is then over the same rows.
    ``fill``: Spark executors pick the queries and search exactly where the shards are (``shard_vectors``).
    """
    positions = ann.tuning_positions(all_ids, min(TUNING_QUERIES, len(all_ids)))
    query_ids, queries = picker(fill)(store, shards, manifest, positions)
    truth = exact_finder(fill)(store, shards, manifest, queries, query_ids, graph)
    return tune_where_lists_are(store, index, queries, query_ids, truth, target, fill)


def tune_where_lists_are(store, index, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
                         target: float, fill=None) -> ann.Tuning:
    """``ann.tune``, run by the fill's worker (``runner``) for an on-disk index: tuning reads most of its
    lists file, pages that would otherwise count against the driver as the set grows.  The worker reads the
    index from a temporary file beside the lists (written here, deleted after); its parameters are set here."""
    lists = on_disk_lists(index)
    if lists is None or getattr(fill, "run", None) is None:
        return ann.tune(index, queries, query_ids, truth, target)
    tmp = temp_path(store.root / f"tuning-{Path(lists.filename).stem}.faiss", "tuning")
    try:
        atomic_write_faiss(tmp, index)
        tuning = runner(fill)(store, _tune_file, tmp.name, lists.filename, queries, query_ids, truth, target,
                              needs=(tmp.name, lists.filename))
    finally:
        tmp.unlink(missing_ok=True)
    ann.set_search_params(index, tuning.params)
    return tuning


def _tune_file(store, name: str, lists: str, queries, query_ids, truth, target: float) -> ann.Tuning:
    return ann.tune(store.read_index(name, lists_file=lists), queries, query_ids, truth, target)


def tuning_for(store, manifest, shards, all_ids: np.ndarray, index, plan: BuildPlan, incremental: bool,
               built_tuning: ann.Tuning | None, fill=None) -> tuple[dict, int]:
    """(tuning as stored in the manifest, the count it was made for): kept, taken from the build, or made now.

    An updated index keeps its tuning (and gets its parameters set) until the
    count has moved by more than ``plan.RETUNE_GROWTH``.
    """
    prev, n, target = manifest.get("ann") or {}, plan.n, plan.options.target_recall
    if ann.is_exact(plan.factory):
        return ann.Tuning({}, 1.0, 0.0, 0, target).to_dict(), n
    if built_tuning is not None:
        return built_tuning.to_dict(), n
    if not incremental or needs_tuning(prev, n, target):
        return tune_index(store, manifest, shards, all_ids, index, target, fill=fill).to_dict(), n
    tuning = prev.get("tuning")
    ann.set_search_params(index, tuning["params"])
    return tuning, prev.get("tuned_n", 0)
