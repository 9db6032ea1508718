"""Choosing, training and tuning the FAISS index.

Small sets get an exact scan.  Larger ones get an approximate index chosen
from the number of vectors, their dimension and a memory budget, in this
order of preference (each is picked only if it fits the budget):

    Flat            exact; up to FLAT_MAX vectors a scan is fast enough
    HNSW32          graph; fastest queries, but slow to build: up to HNSW_MAX vectors
    IVF{k},PQ{m}x4fs,RFlat  product quantisation with 4-bit codes (fast-scan), m/2 bytes per
                    vector (m <= d/4), candidates re-scored exactly with the full vectors,
                    which stay on disk (memory-mapped): their RAM is not counted in the budget

Measured at 1M x 1280 (scripts/bench_search.py), the last reaches the same
recall as IVF-Flat at a 26x lower single-query latency (4.4 ms against 115
ms) in 1/27 of the RAM.  Without re-ranking (``rerank=False``) the order after
HNSW is IVF{k},Flat, then IVF{k},SQ8 (a byte per dimension), IVF{k},SQ6 (6 bits),
then 4-bit PQ codes alone (which reach only ~0.92 recall@10 on 1280-d CNN-like
vectors even with every list probed).

OPQ rotations and 8-bit PQ codes can be asked for with an explicit factory
string, but are not chosen automatically: training their 256-centroid
codebooks took minutes here where 4-bit codebooks take seconds.

Search parameters (nprobe, efSearch, the re-ranking factor) are then tuned
on held-back queries taken from the indexed vectors (ones left out of the
training sample, see ``held_out``), for a target recall@10 against exact
search.  Vectors are unit length and the metric is
inner product (cosine similarity) throughout.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

FLAT_MAX = 20_000  # an exact scan of 20k x 1280 takes ~15 ms here: no need to approximate below
HNSW_MAX = 200_000  # HNSW builds ~10x slower than IVF on a CPU; above this IVF is the better deal
HNSW_M = 32
ID_BYTES = 8  # an int64 id per vector, in the inverted lists or the id map
DEFAULT_MAX_MEMORY = 32 * 2**30  # generous; autofaiss uses the same default
MIN_TRAIN_PER_LIST = 39  # FAISS warns below 39 training points per centroid
SEARCH_K = 10
MMAP_ABOVE = 1 << 30  # index files this large are memory-mapped rather than read into RAM


@dataclass(frozen=True)
class AnnOptions:
    """How to build the index: see IndexConfig for the user-facing fields."""

    index_type: str = "auto"  # "auto" or a FAISS factory string, e.g. "IVF1024,Flat"
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes the index may take in RAM
    target_recall: float = 0.95  # recall@10 against exact search the tuning aims for
    # re-score candidates exactly with the full vectors, kept on disk (memory-mapped);
    # None: only for product-quantised indexes, whose codes alone rarely reach the target
    rerank: bool | None = None
    use_gpu: str = "auto"  # "auto": a GPU if FAISS has one; "no": CPU only


def parse_memory(text) -> int:
    """'4G', '512MB', '1.5GiB', 2**30 -> bytes."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise ValueError(f"memory size {text!r} not understood: write e.g. 512M, 4G or 1.5GB")
        value = int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return value


def nlist_for(n: int) -> int:
    """Inverted lists for n vectors: a power of two near 2 sqrt(n), each list trainable.

    FAISS suggests 4 to 16 sqrt(n); training cost grows with the square of the
    number of lists, and 2 sqrt(n) trains 4x faster than 4 sqrt(n) for a
    slightly larger nprobe, which tuning finds.
    """
    k = 2 ** round(math.log2(max(2 * math.sqrt(max(n, 1)), 1)))
    while k > 16 and k * MIN_TRAIN_PER_LIST > n:
        k //= 2
    return int(max(1, min(k, 65536)))


def _pq_m(d: int, n: int, budget: int, nlist: int, most: int) -> int | None:
    """Largest number (<= most) of 4-bit PQ sub-quantizers, dividing d, whose codes fit the budget."""
    for m in sorted((m for m in range(2, d + 1, 2) if d % m == 0 and m <= most), reverse=True):
        if estimate_memory(f"IVF{nlist},PQ{m}x4fs", n, d) <= budget:
            return m
    return None


def with_rerank(factory: str, rerank: bool | None) -> str:
    """``factory`` with exact re-scoring appended when asked for (None: for PQ codes only)."""
    if is_exact(factory) or factory.endswith("RFlat"):
        return factory
    if rerank or (rerank is None and "PQ" in factory):
        return factory + ",RFlat"
    return factory


def estimate_memory(factory: str, n: int, d: int) -> int:
    """Bytes an index of type ``factory`` takes in RAM for n vectors of dimension d."""
    nlist = int(m.group(1)) if (m := re.search(r"IVF(\d+)", factory)) else 0
    coarse = nlist * d * 4
    if factory.endswith("RFlat"):
        factory = factory[: -len(",RFlat")]  # the full vectors are memory-mapped from disk, not in RAM
    if factory == "Flat":
        per = 4 * d
    elif factory.startswith("HNSW"):
        m = int(re.match(r"HNSW(\d+)", factory).group(1))
        per = 4 * d + int(2 * m * 4 * 1.05)  # level-0 links (2M), plus ~5 % for the upper levels
    elif m := re.search(r"PQ(\d+)x(\d+)", factory):
        per = int(m.group(1)) * int(m.group(2)) // 8
        if factory.endswith("fs"):  # fast-scan lists are padded to blocks of 32 codes: ~16 per list
            coarse += nlist * 16 * (per + ID_BYTES)
        if om := re.match(r"OPQ\d+_(\d+)", factory):
            coarse = nlist * int(om.group(1)) * 4 + d * int(om.group(1)) * 4
    elif sq := re.search(r",SQ([468])$", factory):  # 8, 6 or 4 bits per dimension
        per = math.ceil(d * int(sq.group(1)) / 8)
    elif ",SQfp16" in factory:
        per = 2 * d
    else:  # IVF..,Flat and anything else stores full vectors
        per = 4 * d
    return n * (per + ID_BYTES) + coarse


def choose_index(n: int, d: int, max_memory: int = DEFAULT_MAX_MEMORY, rerank: bool | None = None) -> str:
    """The FAISS factory string for n vectors of dimension d within ``max_memory`` bytes.

    ``rerank``: None or True allow exact re-scoring from memory-mapped vectors
    (add it with ``with_rerank``); False keeps everything in RAM.
    """
    if n <= FLAT_MAX and estimate_memory("Flat", n, d) <= max_memory:
        return "Flat"
    hnsw = f"HNSW{HNSW_M}"
    if n <= HNSW_MAX and estimate_memory(hnsw, n, d) <= max_memory:
        return hnsw
    nlist = nlist_for(n)
    if rerank is False:
        for family in ("Flat", "SQ8", "SQ6"):
            factory = f"IVF{nlist},{family}"
            if estimate_memory(factory, n, d) <= max_memory:
                return factory
    # with re-ranking, d/4 sub-quantizers are enough for the candidates: more only slows the scan
    m = _pq_m(d, n, max_memory, nlist, most=d if rerank is False else max(2, d // 4))
    if m is None:
        smallest = estimate_memory(f"IVF{nlist},PQ2x4fs", n, d)
        raise ValueError(
            f"{n} vectors of dimension {d} need at least {smallest / 2**20:.0f} MiB for the smallest "
            f"index imgsearch builds; raise --max-index-memory (now {max_memory / 2**20:.0f} MiB)"
        )
    return f"IVF{nlist},PQ{m}x4fs"


def is_exact(factory: str) -> bool:
    return factory == "Flat"


def is_graph(factory: str) -> bool:
    """A graph index (HNSW): a query already in it finds itself, and its links lead to its neighbours.

    So tuning on indexed vectors overstates a graph's recall (measured at 1M x
    1280: 0.95 on indexed queries, 0.941 on fresh ones); it is tuned before the
    held-out rows are added instead.
    """
    return factory.startswith("HNSW")


def train_size(factory: str, n: int) -> int:
    """How many vectors to train on: enough per inverted list and for PQ's 256 centroids."""
    nlist = int(m.group(1)) if (m := re.search(r"IVF(\d+)", factory)) else 1
    want = max(40 * nlist, 256 * 64 if "PQ" in factory and "x4" not in factory else 0, 10_000)
    return min(n, want)


HOLDOUT_BITS = 5  # one id in 2**5 = 32 is never trained on: tuning queries are drawn from those


def held_out(ids: np.ndarray) -> np.ndarray:
    """(n,) bool: the ids kept out of every training sample, so tuning measures unseen vectors.

    Queries the index was trained on score higher than new ones (the
    centroids and codebooks fitted them): measured at 100k x 1280, recall@10
    0.963 on trained-on vectors against 0.935 on the others and 0.939 on
    fresh queries.  The choice is a fixed hash of the id (Fibonacci hashing),
    so it holds across incremental runs that keep the trained index.
    """
    h = np.asarray(ids).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # wraps mod 2**64
    return (h >> np.uint64(64 - HOLDOUT_BITS)) == 0


def training_positions(ids: np.ndarray, factory: str, seed: int = 0) -> np.ndarray:
    """Sorted positions into ``ids`` (all indexed rows, in order) to train ``factory`` on: none held out."""
    size = train_size(factory, len(ids))
    candidates = np.flatnonzero(~held_out(ids))
    if len(candidates) < size:  # a tiny set: train on everything
        candidates = np.arange(len(ids))
    return np.sort(np.random.default_rng(seed).choice(candidates, size, replace=False))


def tuning_positions(ids: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    """Sorted positions of up to ``count`` held-out rows to tune on (topped up from the rest if too few)."""
    rng = np.random.default_rng(seed)
    held = np.flatnonzero(held_out(ids))
    if len(held) >= count:
        return np.sort(rng.choice(held, count, replace=False))
    rest = np.setdiff1d(np.arange(len(ids)), held)
    extra = rng.choice(rest, min(len(rest), count - len(held)), replace=False)
    return np.sort(np.concatenate([held, extra]))


def new_index(factory: str, d: int):
    """An empty index of type ``factory`` that takes the rows' ids (IVF keeps ids itself)."""
    import faiss

    if not re.fullmatch(r"[A-Za-z0-9_,.x]+", factory):
        raise ValueError(f"index type {factory!r} is not a FAISS factory string, e.g. IVF1024,Flat")
    try:
        inner = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"FAISS cannot build index type {factory!r}: {str(exc).splitlines()[0]}") from exc
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


def mmap_mode(factory: str, file_bytes: int) -> str | None:
    """How to open an index file: None (read into RAM), "codes" or "lists" (see EmbeddingStore.read_index).

    Re-ranking keeps the full vectors in the file for exact re-scoring: they
    always stay on disk, mapped.  Other large files are mapped too.
    """
    if factory.endswith(",RFlat"):
        return "codes"
    if file_bytes >= MMAP_ABOVE:
        return "lists" if "IVF" in factory else "codes"
    return None


# ------------------------------------------------------------------ exact neighbours and recall
class ExactNeighbours:
    """Exact top-k of fixed queries over vectors that arrive in chunks (one shard at a time)."""

    def __init__(self, queries: np.ndarray, query_ids: np.ndarray, k: int = SEARCH_K):
        import faiss

        self.queries = np.ascontiguousarray(queries, dtype=np.float32)  # (q, d)
        self.query_ids = np.asarray(query_ids, dtype=np.int64)  # (q,)
        self.k = k
        self._heap = faiss.ResultHeap(len(self.queries), k + 1, keep_max=True)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (s, d)
        kk = min(self.k + 1, len(vectors))
        if kk == 0:
            return
        scores, rows = faiss.knn(self.queries, vectors, kk, metric=faiss.METRIC_INNER_PRODUCT)  # (q, kk)
        found = np.where(rows >= 0, np.asarray(ids, np.int64)[np.maximum(rows, 0)], -1)
        if kk < self.k + 1:  # pad so the heap sees k+1 columns
            pad = self.k + 1 - kk
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            found = np.pad(found, ((0, 0), (0, pad)), constant_values=-1)
        self._heap.add_result(np.ascontiguousarray(scores, np.float32), np.ascontiguousarray(found, np.int64))

    def result(self) -> np.ndarray:
        """(q, k) ids of the exact nearest neighbours of each query, the query itself left out."""
        self._heap.finalize()
        return _drop_self(self._heap.I, self.query_ids, self.k)


def _drop_self(found: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(found), k), -1, np.int64)
    for r, (row, qid) in enumerate(zip(found, query_ids)):
        kept = row[(row != qid) & (row >= 0)][:k]
        out[r, : len(kept)] = kept
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true top-k found in its returned top-k."""
    k = truth.shape[1]
    hits = [len(np.intersect1d(f[f >= 0], t[t >= 0])) / max(1, int((t >= 0).sum()))
            for f, t in zip(found[:, :k], truth)]
    return float(np.mean(hits)) if hits else 1.0


def measure(index, queries, query_ids, truth, k: int = SEARCH_K) -> tuple[float, float]:
    """(recall@k with the query itself left out, mean seconds per query one at a time)."""
    t0 = time.perf_counter()
    found = np.vstack([index.search(queries[i : i + 1], k + 1)[1] for i in range(len(queries))])  # (q, k+1)
    seconds = (time.perf_counter() - t0) / max(1, len(queries))
    return recall_at_k(_drop_self(found, query_ids, k), truth), seconds


@dataclass
class Tuning:
    params: dict
    recall: float  # measured recall@10 with these parameters
    query_ms: float  # mean single-query latency while tuning
    queries: int
    target: float

    def to_dict(self) -> dict:
        return {"params": self.params, "recall_at_10": round(self.recall, 4),
                "query_ms": round(self.query_ms, 3), "queries": self.queries, "target_recall": self.target}


def tune(index, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
         target: float = 0.95) -> Tuning:
    """The cheapest search parameters reaching ``target`` recall@10 (or the best reachable).

    For each setting of the secondary knob (the re-ranking factor), the
    main knob (nprobe or efSearch) grows until the target is met; of those
    that meet it, the fastest measured wins.
    """
    ivf, hnsw, refine = _parts(index)
    if ivf is not None:
        name, values = "nprobe", [v for v in (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
                                              384, 512, 1024, 2048, 4096) if v <= ivf.nlist]
    elif hnsw is not None:
        name, values = "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    else:
        recall, seconds = measure(index, queries, query_ids, truth)
        return Tuning({}, recall, seconds * 1e3, len(queries), target)
    factors = [1, 2, 4, 8, 16] if refine is not None else [None]
    best, best_miss = None, None
    for factor in factors:
        for value in values:
            params = {name: value} | ({"k_factor": factor} if factor else {})
            set_search_params(index, params)
            recall, seconds = measure(index, queries, query_ids, truth)
            result = Tuning(params, recall, seconds * 1e3, len(queries), target)
            log.debug("%s: recall@10 %.4f, %.2f ms", params, recall, seconds * 1e3)
            if recall >= target:
                if best is None or result.query_ms < best.query_ms:
                    best = result
                break
            if best_miss is None or recall > best_miss.recall:
                best_miss = result
    chosen = best or best_miss
    if best is None:
        log.warning("recall@10 %.3f is below the target %.2f even at the widest search; "
                    "a larger --max-index-memory allows a more accurate index", chosen.recall, target)
    set_search_params(index, chosen.params)
    return chosen


# ------------------------------------------------------------------ GPU
def to_gpu_if_available(index, use_gpu: str = "auto"):
    """(index, device): the index cloned to all GPUs when FAISS has GPU support and a GPU, else as is."""
    from .faiss_index import gpu_count

    if use_gpu == "no" or gpu_count() == 0:
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
