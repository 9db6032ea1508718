"""Choosing the FAISS index type for a set of vectors and a memory budget.

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

import math
import re
from dataclasses import dataclass

from imgsearch.indexer.config import ON_DISK_MODES  # noqa: F401  (re-exported: ann.ON_DISK_MODES)
from imgsearch.indexer.errors import InvalidInputError

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
    # inverted lists in one file beside the index, memory-mapped (see wants_on_disk): "auto", "always", "never"
    on_disk: str = "auto"



def on_disk_capable(factory: str) -> bool:
    """True for IVF types whose inverted lists FAISS can keep in an ``OnDiskInvertedLists`` file.

    Not Flat or HNSW (no inverted lists), not fast-scan PQ (``fs``: its lists are
    packed in blocks of 32 codes) and not re-ranking (``RFlat``: the full vectors
    live in the re-ranking step, which merging the lists would lose), not
    IVF-PQ with a second PQ (``PQ8+16``: FAISS's ``merge_ondisk`` refuses it).
    """
    return "IVF" in factory and "fs" not in factory and "+" not in factory and not factory.endswith("RFlat")


def wants_on_disk(mode: str, factory: str, n: int, d: int, max_memory: int, prefer: bool = False) -> bool:
    """Whether the index is built as an on-disk index: its lists merged into one memory-mapped file.

    "never", or a type that cannot be (``on_disk_capable``): no.  "always": yes.
    "auto": when ``prefer`` (the partial indexes are filled elsewhere, by Spark
    executors, or the index is on disk already: a local incremental run keeps
    it there rather than flipping with each run's engine), or when the index
    would not fit the memory budget in RAM.
    """
    if mode == "never" or not on_disk_capable(factory):
        return False
    return mode == "always" or prefer or estimate_memory(factory, n, d) > max_memory


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


def choose_index(n: int, d: int, max_memory: int = DEFAULT_MAX_MEMORY, rerank: bool | None = None,
                 on_disk: bool = False) -> str:
    """The FAISS factory string for n vectors of dimension d within ``max_memory`` bytes.

    ``rerank``: None or True allow exact re-scoring from memory-mapped vectors
    (add it with ``with_rerank``); False keeps everything in RAM.
    ``on_disk``: the inverted lists will live in a memory-mapped file (a build
    filled by Spark executors, or ``--on-disk always``), so an IVF index is one
    whose lists can (``on_disk_capable``): 8-bit scalar codes, d bytes a vector
    on disk, which keep recall@10 within reach of the target without re-ranking
    (fast-scan PQ and its re-ranking cannot be merged into one lists file).
    """
    if n <= FLAT_MAX and estimate_memory("Flat", n, d) <= max_memory:
        return "Flat"
    hnsw = f"HNSW{HNSW_M}"
    if n <= HNSW_MAX and estimate_memory(hnsw, n, d) <= max_memory:
        return hnsw
    nlist = nlist_for(n)
    if on_disk:
        return f"IVF{nlist},SQ8"
    if rerank is False:
        for family in ("Flat", "SQ8", "SQ6"):
            factory = f"IVF{nlist},{family}"
            if estimate_memory(factory, n, d) <= max_memory:
                return factory
    # with re-ranking, d/4 sub-quantizers are enough for the candidates: more only slows the scan
    m = _pq_m(d, n, max_memory, nlist, most=d if rerank is False else max(2, d // 4))
    if m is None:
        smallest = estimate_memory(f"IVF{nlist},PQ2x4fs", n, d)
        raise InvalidInputError(
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
