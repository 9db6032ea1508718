"""Lookups by id after many incremental runs (issue 19): p50 of ``search_id`` against a one-shard index.

Writes N rows of synthetic vectors (indexer/synthetic.py) once as one run (one
shard) and once as RUNS incremental runs of ``index-vectors`` (each run its
shard), with publishing's compaction on (as shipped) and off (every run's
shard kept: the id -> shard map alone), and prints the shard counts and the
p50 of ``search_id`` and of ``vector`` for each, measured side by side.

    python scripts/bench_shards.py --rows 20000 --runs 100
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.indexer.config import IndexConfig  # noqa: E402
from imgsearch.indexer.publish import compact  # noqa: E402
from imgsearch.indexer.run.index_vectors import index_vectors  # noqa: E402
from imgsearch.indexer.synthetic import ClusteredEmbeddings  # noqa: E402
from imgsearch.search.engine import SearchEngine  # noqa: E402


def write_part(path: Path, vectors: np.ndarray, first: int) -> Path:
    pq.write_table(pa.table({"path": [f"/synthetic/{i}.jpg" for i in range(first, first + len(vectors))],
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                                            vectors.shape[1])}), path)
    return path


def build(work: Path, vectors: np.ndarray, runs: int, compaction: bool) -> Path:
    index_dir = work / f"idx-{runs}-{'compact' if compaction else 'kept'}"
    config = dataclasses.replace(IndexConfig(progress=False), index_type="Flat")
    saved = compact.COMPACT_AT
    compact.COMPACT_AT = saved if compaction else 10**9
    try:
        for part, rows in enumerate(np.array_split(np.arange(len(vectors)), runs)):
            src = write_part(work / f"part-{part}.parquet", vectors[rows], int(rows[0]))
            index_vectors(src, index_dir, config, model="synthetic")
    finally:
        compact.COMPACT_AT = saved
    return index_dir


def p50_ms(fn, ids) -> float:
    times = []
    for i in ids:
        t = time.perf_counter()
        fn(int(i))
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()

    vectors = ClusteredEmbeddings(args.dim, clusters=50, seed=0).sample(args.rows, seed=1)  # (n, D)
    work = Path(tempfile.mkdtemp(prefix="imgsearch-shards-"))
    try:
        t = time.perf_counter()
        folders = {"one run": build(work, vectors, 1, True),
                   f"{args.runs} runs, compaction on": build(work, vectors, args.runs, True),
                   f"{args.runs} runs, compaction off": build(work, vectors, args.runs, False)}
        print(f"{args.rows} rows x {args.dim}, built in {time.perf_counter() - t:.0f} s")
        ids = np.random.default_rng(2).integers(0, args.rows, args.queries)
        engines = {name: SearchEngine.open(folder) for name, folder in folders.items()}
        for e in engines.values():  # warm: the first lookup reads the shard footers
            e.search_id(0, k=10)
        base = None
        for name, e in engines.items():
            lookup = p50_ms(lambda i: e.search_id(i, k=10), ids)
            vector = p50_ms(e.vector, ids)
            base = base or lookup
            print(f"  {name:28s} {len(e.manifest['shards']):4d} shards   search_id p50 {lookup:6.2f} ms "
                  f"({lookup / base:.2f} x one run)   vector p50 {vector:6.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
