#!/usr/bin/env python
"""Indexing at scale on Spark: memory, time per million, recall and opening, for growing sets, in one run.

For each size (default 250k, 1M and 2M) a vectors file of seeded CNN-like
vectors (indexer/synthetic.py; dimension --dim, 256 by default so that three
sizes fit this disk and session: 2M x 1280 would be 10 GB per copy) is
indexed from scratch by ``imgsearch index-vectors --engine spark`` on Spark
``local[2]``, in a fresh Python process (the driver), then opened by a fresh
``SearchEngine`` in another.  Printed side by side:

  driver peak RSS     the driver's Python process (VmHWM: ru_maxrss would count this script's memory,
                      which Linux carries across fork and exec): what must not grow with the set
  JVM peak RSS        Spark's JVM (in local mode it is the driver's JVM and the executors' together)
  executor peak RSS   the largest Python worker (embedding rows, writing shards, filling partial indexes)
  s / million         the run's wall time per million vectors (reading to publish), in a Spark session
                      that has indexed WARMUP vectors first; "first run" is that warm-up's wall time:
                      Spark's start-up (JIT, code generation, the Python workers' imports), which a
                      fresh driver pays once whatever the size (measured: a 250k run took 44 s in a
                      fresh session, 28-31 s in a warm one)
  index               the automatic FAISS index chosen, and whether it is served from disk, memory-mapped
  recall@10           on fresh queries, against exact search over every vector
  open s, open RSS    SearchEngine.open's wall time and resident memory growth

and the targets: driver peak RSS growing < 10 % from the smallest to the
largest size, time per million within 1.5x, recall@10 >= 0.95.

    python scripts/bench_scale.py --work /tmp/imgsearch-bench-scale
    python scripts/bench_scale.py --sizes 50000,200000 --dim 64   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 50_000  # vectors made, written and searched at once
WARMUP = 20_000  # vectors indexed first, in the same session, before the timed run
QUERIES = 200
SEED = 19

DRIVER = """
import json, sys, threading, time
peak_anon = [0]
def sample_anon():  # the driver's anonymous memory (heap), without the file pages it maps (shards, lists file)
    while True:
        anon = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon"))
        peak_anon[0] = max(peak_anon[0], anon)
        time.sleep(0.05)
threading.Thread(target=sample_anon, daemon=True).start()
from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.spark.vectors import index_vectors_spark
from imgsearch.indexer.spark.images import spark_session
src, index_dir, master, warmup = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
config = IndexConfig(progress=False, spark_master=master)
t = time.perf_counter()
spark = spark_session(config, {"spark.ui.enabled": "false"})
session = time.perf_counter() - t
t = time.perf_counter()  # a first, small run: the JVM's JIT and code generation, the Python workers' imports
import shutil, tempfile
scratch = tempfile.mkdtemp(prefix="bench-scale-warmup-")
index_vectors_spark(warmup, scratch, config, model="synthetic", spark=spark)
shutil.rmtree(scratch)
warmup_seconds = time.perf_counter() - t
t = time.perf_counter()
summary = index_vectors_spark(src, index_dir, config, model="synthetic", spark=spark)
seconds = time.perf_counter() - t
jvm = spark.sparkContext._gateway.proc.pid
hwm = next(int(line.split()[1]) for line in open(f"/proc/{jvm}/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "session_seconds": session, "warmup_seconds": warmup_seconds,
                  "added": summary.added,
                  "driver_peak_mb": next(int(l.split()[1]) for l in open("/proc/self/status")
                                         if l.startswith("VmHWM")) / 1024,
                  "driver_anon_peak_mb": peak_anon[0] / 1024,
                  "jvm_peak_mb": hwm / 1024,
                  "summary_driver_peak_mb": summary.driver_peak_rss_mb, "spark_seconds": summary.spark_seconds,
                  "executor_peak_mb": summary.worker_peak_rss_mb}))
"""

OPEN = """
import json, sys, time
import numpy as np
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
import faiss
from imgsearch.search.engine import SearchEngine
before = rss_mb()
t = time.perf_counter()
engine = SearchEngine.open(sys.argv[1])
opened = time.perf_counter() - t
after = rss_mb()
queries = np.load(sys.argv[2])
found = []
t = time.perf_counter()
for q in queries:
    found.append([int(h.path.rsplit("/", 1)[1].split(".")[0]) for h in engine.search_vector(q, 10)])
search_ms = (time.perf_counter() - t) / len(queries) * 1e3
ivf = None
try:
    ivf = faiss.extract_index_ivf(engine.index)
except RuntimeError:
    pass
lists = type(ivf.invlists).__name__ if ivf is not None else None
if ivf is not None and lists == "InvertedLists":
    lists = type(faiss.downcast_InvertedLists(ivf.invlists)).__name__
ann = engine.manifest.get("ann") or {}
print(json.dumps({"open_seconds": opened, "open_rss_mb": after - before, "found": found, "search_ms": search_ms,
                  "index_type": engine.manifest.get("index_type"), "lists": lists,
                  "on_disk": bool(ann.get("on_disk")), "count": len(engine)}))
"""


def path_of(i: int) -> str:
    return f"synthetic/{i:09d}.jpg"


def make_vectors(path: Path, n: int, dim: int) -> None:
    """A vectors file of n rows (path, label, embedding), row groups of CHUNK rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imgsearch.indexer.synthetic import ClusteredEmbeddings

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == n:
        return
    gen = ClusteredEmbeddings(dim, seed=SEED)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, pa.schema([("path", pa.string()), ("label", pa.string()),
                                          ("embedding", pa.list_(pa.float32(), dim))])) as writer:
        start = 0
        for chunk in gen.chunks(n, SEED):  # (c, dim)
            rows = range(start, start + len(chunk))
            writer.write_table(pa.table({
                "path": [path_of(i) for i in rows], "label": [f"c{i % 100:02d}" for i in rows],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), dim)}))
            start += len(chunk)
    tmp.replace(path)


def exact_top10(n: int, dim: int, queries: np.ndarray) -> np.ndarray:
    """(q, 10) row numbers of the exact nearest neighbours by inner product, over the seeded chunks."""
    from imgsearch.indexer.synthetic import ClusteredEmbeddings

    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    start = 0
    for chunk in ClusteredEmbeddings(dim, seed=SEED).chunks(n, SEED):
        scores = queries @ chunk.T  # (q, c)
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1)[:, :10]
        best_scores, best_rows = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_rows, keep, 1)
        start += len(chunk)
    return best_rows


def run_json(script: str, *args) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        sys.exit(f"failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250000,1000000,2000000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the vectors files and indexes")
    args = parser.parse_args()
    from imgsearch.indexer.synthetic import ClusteredEmbeddings

    args.work.mkdir(parents=True, exist_ok=True)
    queries = ClusteredEmbeddings(args.dim, seed=SEED).sample(QUERIES, seed=SEED + 1)  # fresh: not indexed
    np.save(args.work / "queries.npy", queries)
    warmup = args.work / f"warmup-{WARMUP}-{args.dim}.parquet"
    make_vectors(warmup, WARMUP, args.dim)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        src, index_dir = args.work / f"vectors-{n}-{args.dim}.parquet", args.work / f"index-{n}"
        make_vectors(src, n, args.dim)
        shutil.rmtree(index_dir, ignore_errors=True)
        built = run_json(DRIVER, src, index_dir, args.master, warmup)
        opened = run_json(OPEN, index_dir, args.work / "queries.npy")
        truth = exact_top10(n, args.dim, queries)
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(opened["found"], truth.tolist())])
        rows.append(dict(n=n, recall=float(recall), **built, **{k: v for k, v in opened.items() if k != "found"}))
        r = rows[-1]
        print(f"{n:>9,}  driver {r['driver_peak_mb']:5.0f} MB (heap {r['driver_anon_peak_mb']:4.0f})  JVM {r['jvm_peak_mb']:6.0f} MB  "
              f"executor {r['executor_peak_mb'] or 0:6.0f} MB  {r['seconds'] / n * 1e6:6.0f} s/M "
              f"(first run {r['warmup_seconds']:.0f} s)  "
              f"{r['index_type']} ({r['lists']}{', on disk' if r['on_disk'] else ''})  recall@10 {recall:.3f}  "
              f"open {r['open_seconds']:.2f} s +{r['open_rss_mb']:.0f} MB  search {r['search_ms']:.1f} ms",
              flush=True)
        if not args.keep:
            shutil.rmtree(index_dir, ignore_errors=True)
    small, large = rows[0], rows[-1]
    per_million = [r["seconds"] / r["n"] * 1e6 for r in rows]
    growth = large["driver_peak_mb"] / small["driver_peak_mb"] - 1
    heap = large["driver_anon_peak_mb"] / small["driver_anon_peak_mb"] - 1
    print(f"\ndriver peak RSS {small['n']:,} -> {large['n']:,}: {growth:+.1%}, its heap (anonymous) {heap:+.1%} "
          f"(target < +10 %)")
    print(f"time per million: {min(per_million):.0f}-{max(per_million):.0f} s, "
          f"{max(per_million) / min(per_million):.2f}x (target <= 1.5x), in a warm session")
    cold = [(r["seconds"] + r["warmup_seconds"]) / r["n"] * 1e6 for r in rows]
    print(f"  with the warm-up run counted too (a fresh driver's whole cost): {min(cold):.0f}-{max(cold):.0f} s, "
          f"{max(cold) / min(cold):.2f}x")
    print(f"recall@10: {min(r['recall'] for r in rows):.3f} lowest (target >= 0.95); dimension {args.dim}")
    (args.work / "bench_scale.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
