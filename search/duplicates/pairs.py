"""Pairs of indexed images at least as similar as a threshold, found without an n x n matrix.

Scores are the index's own similarity: the inner product of the unit vectors
in the space the FAISS index searches (whitened when the index is, as
``SearchEngine.search_vector`` scores a query).  Two ways, by index type:

* an exact (``Flat``) index: exact inner products of its own vectors (held by
  the index, memory-mapped when large), a tile of rows against a tile of
  columns at a time, the upper triangle only: ``BLOCK_SCORES`` scores in
  memory at most (the work grows as n^2: the automatic choice makes an index
  exact only up to 20,000 vectors);
* any other (HNSW, IVF, ...): every indexed vector, read from the shards one
  shard at a time, is a query of batched k-NN searches of the index in blocks
  of ``QUERY_BLOCK``, keeping neighbours scoring at least the threshold; a
  query whose k-th neighbour still passes is searched again with 4k (up to
  ``MAX_NEIGHBOURS``), so no neighbour above the threshold is cut off by k.
  Each pair is found from both ends, which makes up for most of what the
  approximate search misses.  Scores are those the index gives (exact for
  HNSW and re-ranked indexes, approximate for quantised ones without
  re-ranking).

Memory: the pairs found (20 bytes each), one shard or one block at a time, and the index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from imgsearch.indexer.folder.store import embeddings_of
from imgsearch.indexer.folder.whitening import search_space
from imgsearch.indexer.vectors import search_index
from imgsearch.search.duplicates.progress import DuplicatesProgress

log = logging.getLogger(__name__)

QUERY_BLOCK = 4096  # queries per k-NN search call
FIRST_K = 16  # neighbours asked for first: near-duplicates of one image are rarely more
MAX_NEIGHBOURS = 4096  # a query with more neighbours above the threshold keeps these (its component has the rest)
BLOCK_SCORES = 1 << 25  # exact scores computed at once (128 MB of float32)
# The scan searches lighter than the index was tuned for (recall@10): a near-duplicate is far closer than
# the 10th neighbour.  Measured with scripts/bench_duplicates_scale.py (pairs >= 0.9 of a sample of queries):
# 100,000 x 1280, HNSW32: efSearch 16 finds the same pairs as the tuned 128, 7x faster; 1,000,000 x 1280,
# IVF2048,PQ320x4fs,RFlat: nprobe 16 (and even 4) the same as the tuned 384, 10x faster.
SCAN_EF = 16  # a graph's efSearch (at least k)
SCAN_NPROBE = 16  # inverted lists probed (at most the tuned number)


@dataclass(frozen=True)
class Pairs:
    """Unordered pairs, each once: ids ``a`` < ``b`` (m,) int64, ``score`` (m,) float32."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    method: str  # "exact" or "ann:<factory>"

    def __len__(self) -> int:
        return len(self.a)


def _unique_pairs(a: np.ndarray, b: np.ndarray, score: np.ndarray, method: str) -> Pairs:
    """Pairs in any order and direction, repeated or not -> each once (the higher score), sorted."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((-score, hi, lo))
    lo, hi, score = lo[order], hi[order], score[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return Pairs(lo[first], hi[first], score[first].astype(np.float32), method)


def _flat_vectors(index):
    """(ids (n,), vectors (n, d) viewing the index's memory) of an exact IDMap'd flat index, else None."""
    import faiss

    index = faiss.downcast_index(index)
    if not isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return None
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, faiss.IndexFlat) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    n, d = inner.ntotal, inner.d
    vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)  # no copy: the index's own (mapped) memory
    return faiss.vector_to_array(index.id_map).astype(np.int64), vectors


class IndexVectors:
    """The vectors one engine's version searches: all pairs above a threshold, and vectors by id."""

    def __init__(self, engine):
        self.engine = engine
        self.flat = _flat_vectors(engine.index) if engine.index is not None else None
        if self.flat is not None:
            ids = self.flat[0]
            self._by_id = np.argsort(ids, kind="stable")
            self._sorted_ids = ids[self._by_id]

    @property
    def method(self) -> str:
        return "exact" if self.flat is not None else f"ann:{self.engine.manifest.get('index_type')}"

    def pairs(self, threshold: float, progress=None) -> Pairs:
        """``progress`` (a ``progress.DuplicatesProgress``): the ``pairs`` stage, counted in images searched."""
        progress = progress or DuplicatesProgress(bars=False)
        progress.start("pairs", len(self.engine), f"finding pairs scoring at least {threshold:g}")
        if self.engine.index is None or len(self.engine) < 2:
            empty = np.empty(0, np.int64)
            return Pairs(empty, empty, np.empty(0, np.float32), self.method)
        search = self._exact_pairs if self.flat is not None else self._ann_pairs
        found = search(threshold, progress)
        return _unique_pairs(*found, self.method)

    def _exact_pairs(self, threshold: float, progress):
        ids, vectors = self.flat
        n = len(ids)
        rows = min(QUERY_BLOCK, n)
        cols = max(rows, BLOCK_SCORES // rows)
        parts = []
        for r0 in range(0, n, rows):
            block = vectors[r0:r0 + rows]  # (r, d)
            for c0 in range(r0, n, cols):  # this block and those after it: the upper triangle
                scores = block @ vectors[c0:c0 + cols].T  # (r, c)
                i, j = np.nonzero(scores >= threshold)
                upper = c0 + j > r0 + i  # each pair once, never an image with itself
                i, j = i[upper], j[upper]
                parts.append((ids[r0 + i], ids[c0 + j], scores[i, j]))
            progress.advance(len(block))
        return [np.concatenate(p) for p in zip(*parts)] if parts else [np.empty(0)] * 3

    def _read_shard(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids (s,), search-space vectors (s, d)) of one shard of the version."""
        engine = self.engine
        table = engine.store.read_table([name], ["id", "embedding"])
        return table.column("id").to_numpy(), search_space(embeddings_of(table), engine.store.root, engine.manifest)

    def _shard_vectors(self):
        for name in self.engine.manifest["shards"]:
            yield self._read_shard(name)

    def _ann_pairs(self, threshold: float, progress):
        index, n = self.engine.index, len(self.engine)
        search = _scan_search(index)
        parts = []
        for shard_ids, vectors in self._shard_vectors():
            for start in range(0, len(shard_ids), QUERY_BLOCK):
                parts += _neighbour_pairs(search, shard_ids[start:start + QUERY_BLOCK],
                                          vectors[start:start + QUERY_BLOCK], threshold, n)
                progress.advance(len(shard_ids[start:start + QUERY_BLOCK]))
        return [np.concatenate(p) for p in zip(*parts)] if parts else [np.empty(0)] * 3

    def fetch(self, ids: np.ndarray) -> np.ndarray:
        """Search-space vectors (m, d) of ``ids`` (m,), in their order (a pass over the shards for an ANN index)."""
        ids = np.asarray(ids, np.int64)
        if self.flat is not None:
            return np.asarray(self.flat[1][self._by_id[np.searchsorted(self._sorted_ids, ids)]], np.float32)
        out = np.zeros((len(ids), self.engine.index.d), np.float32)
        order = np.argsort(ids)
        wanted = ids[order]
        for name in self.engine.manifest["shards"]:
            shard_ids = self.engine.store.read_table([name], ["id"]).column("id").to_numpy()
            if not np.isin(shard_ids, wanted).any():
                continue
            shard_ids, vectors = self._read_shard(name)
            hit = np.isin(shard_ids, wanted)
            slots = order[np.searchsorted(wanted, shard_ids[hit])]
            out[slots] = vectors[hit]
        return out


def _scan_search(index):
    """search(queries, k) -> (scores, ids) for the scan, with SCAN_EF / SCAN_NPROBE passed per call (the
    index is shared with other requests: its own parameters are left alone); other index types as tuned."""
    import faiss

    inner = faiss.downcast_index(index)
    if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        inner = faiss.downcast_index(inner.index)
    refine = inner if isinstance(inner, faiss.IndexRefine) else None
    base = faiss.downcast_index(refine.base_index) if refine is not None else inner

    def params_for(k: int):
        if isinstance(base, faiss.IndexHNSW):
            light = faiss.SearchParametersHNSW(efSearch=max(SCAN_EF, k))
        elif isinstance(base, faiss.IndexIVF):
            light = faiss.SearchParametersIVF(nprobe=min(SCAN_NPROBE, base.nprobe))
        else:
            return None
        if refine is None:
            return light
        return faiss.IndexRefineSearchParameters(k_factor=refine.k_factor, base_index_params=light)

    def search(queries, k):
        params = params_for(k)
        if params is None:
            return search_index(index, queries, k)
        return index.search(np.ascontiguousarray(queries, np.float32), k, params=params)
    return search


def _neighbour_pairs(search, query_ids: np.ndarray, queries: np.ndarray, threshold: float, n: int) -> list:
    """[(a, b, score)] for the neighbours of each query scoring >= threshold, itself left out."""
    parts = []
    todo = np.arange(len(query_ids))
    k = min(FIRST_K, n)
    while len(todo):
        scores, found = search(queries[todo], k)  # (q, k)
        more = (scores[:, -1] >= threshold) & (found[:, -1] >= 0) & (k < min(n, MAX_NEIGHBOURS))
        if more.any() and k >= MAX_NEIGHBOURS // 4:
            log.info("%d images have over %d neighbours scoring >= %.3f", int(more.sum()), k, threshold)
        done = ~more
        q_ids = query_ids[todo[done]]
        s, f = scores[done], found[done]
        keep = (s >= threshold) & (f >= 0) & (f != q_ids[:, None])
        rows = np.nonzero(keep)[0]
        parts.append((q_ids[rows], f[keep], s[keep]))
        todo, k = todo[more], min(4 * k, n, MAX_NEIGHBOURS)
    return parts
