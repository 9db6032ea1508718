"""FAISS operations on an index of any type: create, train, remove ids, set search parameters, GPU.

Vectors are unit length and the metric is inner product (cosine similarity) throughout.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np

from imgsearch.indexer.errors import InvalidInputError

log = logging.getLogger(__name__)


def new_index(factory: str, d: int):
    """An empty index of type ``factory`` that takes the rows' ids (IVF keeps ids itself)."""
    import faiss

    if not re.fullmatch(r"[A-Za-z0-9_,.x]+", factory):
        raise InvalidInputError(f"index type {factory!r} is not a FAISS factory string, e.g. IVF1024,Flat")
    try:
        inner = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InvalidInputError(f"FAISS cannot build index type {factory!r}: {str(exc).splitlines()[0]}") from exc
    if _takes_ids(inner):
        return inner
    return faiss.IndexIDMap2(inner)


def _takes_ids(index) -> bool:
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return isinstance(index, faiss.IndexIVF)


def train(index, sample: np.ndarray) -> None:
    """Train on a (t, d) float32 sample (no-op for index types that need none)."""
    if not index.is_trained:
        t0 = time.perf_counter()
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        log.info("trained on %d vectors in %.1f s", len(sample), time.perf_counter() - t0)


def remove_ids(index, ids: np.ndarray) -> bool:
    """Remove ids in place; False if this index type cannot (HNSW, re-ranking): rebuild it then."""
    import faiss

    if len(ids) == 0:
        return True
    try:
        index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
    except RuntimeError:
        return False
    return True


def set_search_params(index, params: dict) -> None:
    """Apply {'nprobe': .., 'efSearch': .., 'k_factor': ..} to an index or its GPU/CPU parts."""
    ivf, hnsw, refine = _parts(index)
    if "nprobe" in params and ivf is not None:
        ivf.nprobe = int(params["nprobe"])
    if "efSearch" in params and hnsw is not None:
        hnsw.hnsw.efSearch = int(params["efSearch"])
    if "k_factor" in params and refine is not None:
        refine.k_factor = float(params["k_factor"])


def _parts(index):
    """(IVF, HNSW, Refine) components of an index, each None if absent."""
    import faiss

    ivf = hnsw = refine = None
    stack = [index]
    while stack:
        idx = faiss.downcast_index(stack.pop())
        if isinstance(idx, faiss.IndexRefine):
            refine = idx
            stack.append(idx.base_index)
        elif isinstance(idx, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexPreTransform)):
            stack.append(idx.index)
        elif isinstance(idx, faiss.IndexIVF):
            ivf = idx
        elif isinstance(idx, faiss.IndexHNSW):
            hnsw = idx
    return ivf, hnsw, refine


def is_on_disk(index) -> bool:
    """True if the index's inverted lists are an ``OnDiskInvertedLists`` file (memory-mapped)."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # no inverted lists at all
        return False
    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)


# ------------------------------------------------------------------ GPU
def to_gpu_if_available(index, use_gpu: str = "auto"):
    """(index, device): the index cloned to all GPUs when FAISS has GPU support and a GPU, else as is.

    An on-disk index stays on CPU: its lists are a memory-mapped file, which
    copying to a GPU would read whole into its memory, the thing it is there to avoid.
    """
    from imgsearch.indexer.vectors import gpu_count

    if use_gpu == "no" or gpu_count() == 0 or is_on_disk(index):
        return index, "cpu"
    import faiss

    try:
        return faiss.index_cpu_to_all_gpus(index), "gpu"
    except (RuntimeError, AttributeError) as exc:  # some types (HNSW, re-ranking) have no GPU version
        log.info("index stays on CPU: %s", str(exc).splitlines()[0])
        return index, "cpu"


def to_cpu(index, device: str):
    """A CPU copy of an index built on ``device`` (for writing to disk)."""
    if device == "gpu":
        import faiss

        return faiss.index_gpu_to_cpu(index)
    return index
