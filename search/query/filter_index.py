"""Filtered search inside FAISS: only the selected rows are ever candidates, so k results come back when k exist.

The rows a filter selects (``search/query/filters.py``) become an ``IDSelectorBitmap``
passed through ``SearchParameters`` to the index that searches:

- an id map (Flat, HNSW, re-ranking: ``IndexIDMap2`` around them) is
  searched below the map, with a bitmap over FAISS's own sequential ids, and
  the map turns them into row ids; IVF indexes, which keep the row ids
  themselves, get a bitmap over row ids;
- the parameters nest as the index does (``IndexRefineSearchParameters``
  around ``SearchParametersIVF`` or ``SearchParametersHNSW``), carrying the
  tuned nprobe / efSearch / k_factor, raised for small selections
  (``boost``): the nearest selected rows of a query lie further out.

The rule (``EXACT_MAX``): a selection of at most EXACT_MAX rows is searched
exactly, by the index's full vectors (the Flat storage of Flat and HNSW, the
re-ranking vectors of ``...,RFlat``) under the bitmap: it costs one pass over
the bitmap and a dot product per selected row, less than an approximate
search that must look through ~n / selected candidates per result.  An IVF
index without full vectors probes every list instead.  Above EXACT_MAX the
approximate index searches under the bitmap.  Measured by
``scripts/bench_filters.py`` (README).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from imgsearch.search.query.filters import COLUMNS, MetadataColumns

EXACT_MAX = 20_000  # selections up to this many rows are searched exactly (see the module's docstring)
CACHED_SELECTIONS = 16  # filters whose rows and bitmaps a version keeps
MAX_WIDEN = 1e6  # nprobe stops at the number of lists; efSearch at MAX_EF
MAX_EF = 4096


@dataclass
class Selection:
    """The rows one filter selects in one version, and the bitmaps made of them, per index."""

    mask: np.ndarray  # (n,) bool over the engine's rows
    count: int
    bitmaps: dict = field(default_factory=dict)  # id(layout) -> (n_bits, packed uint8)


class Layout:
    """How one FAISS index numbers its vectors, and where its exact vectors are."""

    def __init__(self, index, row_ids: np.ndarray):
        import faiss

        top = faiss.downcast_index(index)
        self.index = index  # kept alive with the layout
        self.id_map = None  # FAISS's sequential ids -> row ids, when an id map wraps the index
        self.row_of_internal = None  # FAISS's sequential ids -> the engine's rows
        if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            self.id_map = faiss.vector_to_array(top.id_map).astype(np.int64)
            order = np.argsort(row_ids, kind="stable")
            self.row_of_internal = order[np.searchsorted(row_ids, self.id_map, sorter=order)]
            self.inner = faiss.downcast_index(top.index)
            self.bits = len(self.id_map)
        else:  # IVF: the lists hold row ids
            self.inner = top
            self.bits = int(row_ids.max()) + 1 if len(row_ids) else 0
        self.exact = _flat_storage(self.inner) if self.id_map is not None else None

    def bitmap(self, selection: Selection, row_ids: np.ndarray) -> np.ndarray:
        """The selection as a packed little-endian bitmap in this index's id space (cached)."""
        key = id(self)
        if key not in selection.bitmaps:
            if self.row_of_internal is not None:
                bits = selection.mask[self.row_of_internal]
            else:
                bits = np.zeros(self.bits, bool)
                bits[row_ids[selection.mask]] = True
            selection.bitmaps[key] = np.packbits(bits, bitorder="little")
        return selection.bitmaps[key]

    def labels(self, found: np.ndarray) -> np.ndarray:
        """FAISS's result ids -> row ids (-1 stays -1)."""
        if self.id_map is None:
            return found
        return np.where(found >= 0, self.id_map[np.maximum(found, 0)], -1)


def _flat_storage(index):
    """The IndexFlat holding an index's full vectors in its own id order, or None (IVF codes, SQ storage)."""
    import faiss

    if isinstance(index, faiss.IndexFlat):
        return index
    if isinstance(index, faiss.IndexHNSW):
        storage = faiss.downcast_index(index.storage)
        return storage if isinstance(storage, faiss.IndexFlat) else None
    if isinstance(index, faiss.IndexRefine):
        refine = faiss.downcast_index(index.refine_index)
        return refine if isinstance(refine, faiss.IndexFlat) else None
    return None


def boost(selected: int, total: int) -> float:
    """How much wider an approximate search looks for a selection of ``selected`` of ``total`` rows.

    A selected fraction f leaves ~f of the probed candidates eligible; sqrt(1/f)
    more probes (lists, graph candidates) keep recall@10 at the unfiltered
    level in scripts/bench_filters.py without paying the full 1/f.
    """
    return math.sqrt(total / max(selected, 1))


def _params(index, sel, widen: float, keep: list):
    """SearchParameters for ``index`` and the indexes inside it: the bitmap, tuned values widened."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = float(index.k_factor)
        params.base_index_params = _params(index.base_index, sel, widen, keep)
    elif isinstance(index, faiss.IndexPreTransform):
        params = faiss.SearchParametersPreTransform()
        params.index_params = _params(index.index, sel, widen, keep)
    elif isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = int(min(index.nlist, math.ceil(index.nprobe * widen)))
    elif isinstance(index, faiss.IndexHNSW):  # a graph walks through unselected nodes too: widen by 1/f, not sqrt
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(min(max(index.hnsw.efSearch, MAX_EF), math.ceil(index.hnsw.efSearch * widen ** 2)))
    else:
        params = faiss.SearchParameters()
    params.sel = sel
    keep.append(params)  # SWIG does not keep nested parameters alive: the caller holds them until the search ends
    return params


class FilteredSearch:
    """Filtered queries of one version: its metadata columns, the selections of recent filters, index layouts."""

    def __init__(self, store, shards: list[str], row_ids: np.ndarray):
        self._store, self._shards = store, shards  # the metadata columns are read on the first filtered query
        self.row_ids = row_ids  # (n,) int64, the engine's row order
        self._columns = None
        self._selections: OrderedDict = OrderedDict()
        self._layouts: dict = {}  # id(index) -> Layout
        self._lock = threading.Lock()

    def columns(self):
        with self._lock:
            if self._columns is None:
                self._columns = MetadataColumns(self._store.read_columns(self._shards, COLUMNS))
            return self._columns

    def select(self, flt) -> Selection:
        """The rows ``flt`` selects (raises InvalidFilterError, UnknownLabelError)."""
        with self._lock:
            if flt in self._selections:
                self._selections.move_to_end(flt)
                return self._selections[flt]
        mask = self.columns().mask(flt)
        selection = Selection(mask, int(mask.sum()))
        with self._lock:
            self._selections[flt] = selection
            while len(self._selections) > CACHED_SELECTIONS:
                self._selections.popitem(last=False)
        return selection

    def layout(self, index) -> Layout:
        with self._lock:
            found = self._layouts.get(id(index))
            if found is None or found.index is not index:
                found = self._layouts[id(index)] = Layout(index, self.row_ids)
            return found

    def search(self, index, queries: np.ndarray, k: int, selection: Selection) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, d) -> scores (q, k), row ids (q, k) among the selected rows only; -1 where fewer exist."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, selection.count)) if selection.count else k
        if selection.count == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        layout = self.layout(index)
        bitmap = layout.bitmap(selection, self.row_ids)
        sel = faiss.IDSelectorBitmap(layout.bits, faiss.swig_ptr(bitmap))
        keep: list = [sel, bitmap]
        exact = selection.count <= EXACT_MAX
        scores, found = self._search(layout, queries, k, sel, keep, exact, selection.count)
        short = (found >= 0).sum(axis=1) < k  # the approximate search ran out of selected candidates
        if not exact and short.any():
            scores[short], found[short] = self._search(layout, queries[short], k, sel, keep, True, selection.count)
        return scores, layout.labels(found)

    def _search(self, layout: Layout, queries, k: int, sel, keep: list, exact: bool, count: int):
        if exact and layout.exact is not None:
            target, params = layout.exact, _params(layout.exact, sel, 1.0, keep)
        else:  # without full vectors, a small selection is searched as widely as allowed: every IVF list
            widen = MAX_WIDEN if exact else boost(count, len(self.row_ids))
            target, params = layout.inner, _params(layout.inner, sel, widen, keep)
        return target.search(queries, k, params=params)

    def search_filter(self, index, queries: np.ndarray, k: int, flt) -> tuple[np.ndarray, np.ndarray]:
        """``search`` among the rows ``flt`` (a ``filters.Filter``) selects."""
        return self.search(index, queries, k, self.select(flt))
