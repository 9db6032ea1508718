#!/usr/bin/env python
"""An on-disk IVF index against the same index in RAM: build time, build peak RSS, serving RSS, recall.

Writes (once, under --work) N seeded CNN-like vectors (indexer/synthetic.py)
as shards, then publishes the same index type from them twice, in one run:
``--on-disk never`` (the inverted lists in RAM) and ``--on-disk always`` (the
partial indexes filled group by group, merged into ``index-GEN.ivfdata``, memory-
mapped).  Each build and each serving measurement runs in its own process, so
peak RSS is that mode's alone.  Serving: open the engine, search the queries
(recall@10 against exact search over the shards), then report the process's
resident memory: VmRSS, and RssAnon, the part that is not file pages the
kernel can drop (the mapped lists are file pages); builds report their peak
RSS (ru_maxrss, mapped file pages included) and their peak RssAnon.

    python scripts/bench_ondisk.py --n 200000
    python scripts/bench_ondisk.py --n 1000000 --dim 256 --factory IVF2048,Flat
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pyarrow as pa  # noqa: E402

from imgsearch.indexer.folder.store import FILE_COLUMNS, EmbeddingStore, embeddings_of, schema  # noqa: E402
from imgsearch.indexer.folder.texts import text_array  # noqa: E402
from imgsearch.indexer.synthetic import ClusteredEmbeddings, synthetic_manifest  # noqa: E402

CHUNK = 50_000  # vectors made and written as one shard
QUERY_SEED = 424_242


def write_shards(folder: Path, n: int, d: int) -> None:
    """The source folder: shards only, and the manifest of the empty index (bench.json)."""
    if (folder / "bench.json").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    store = EmbeddingStore(folder)
    folder.mkdir(parents=True)
    gen = ClusteredEmbeddings(d, clusters=1000, spread=1.0, seed=0)
    for i, start in enumerate(range(0, n, CHUNK)):
        vectors = gen.sample(min(CHUNK, n - start), seed=1_000_003 + i)
        store.write_table(_table(np.arange(start, start + len(vectors)), vectors, d))
    (folder / "bench.json").write_text(json.dumps(dict(synthetic_manifest(d), file_columns=list(FILE_COLUMNS))))


def _table(ids: np.ndarray, vectors: np.ndarray, d: int) -> pa.Table:
    m = len(ids)
    return pa.table({
        "id": pa.array(ids, pa.int64()), "path": text_array(f"/synthetic/{j}.jpg" for j in ids),
        "label": text_array([""] * m), "width": pa.array(np.full(m, 8), pa.int32()),
        "height": pa.array(np.full(m, 8), pa.int32()), "sha256": pa.array([f"{j:064x}" for j in ids]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), d),
        "file_size": pa.nulls(m, pa.int64()), "mtime": pa.nulls(m, pa.int64()), "taken": pa.nulls(m, pa.int64()),
        "camera_make": pa.nulls(m, pa.string()), "camera_model": pa.nulls(m, pa.string()),
    }, schema=schema(d))


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakAnon:
    """The peak of RssAnon while it runs, sampled every 10 ms: ru_maxrss counts mapped file pages too."""

    def __enter__(self):
        import threading

        self.peak, self._stop = status_mb("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, status_mb("RssAnon"))

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def child_build(folder: Path, factory: str, mode: str, group_rows: int) -> dict:
    from imgsearch.indexer import ann
    from imgsearch.indexer.publish import ondisk
    from imgsearch.indexer.publish.version import publish_index

    ondisk.GROUP_ROWS = group_rows  # the vectors one partial index holds while it is filled

    store = EmbeddingStore(folder)
    manifest = json.loads((folder / "bench.json").read_text())
    t0 = time.perf_counter()
    with PeakAnon() as anon:
        published = publish_index(store, manifest, store.completed_shards(),
                                  options=ann.AnnOptions(index_type=factory, on_disk=mode, use_gpu="no"))
    return {"build_s": time.perf_counter() - t0, "build_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "build_anon_mb": anon.peak,
            "on_disk": bool(published["ann"].get("lists_file")), "tuning": ", ".join(f"{k}={v}" for k, v in published["ann"]["tuning"]["params"].items()),
            "files_mb": sum(r["size"] for k, r in published["files"].items() if not k.startswith("shards/")) / 2**20}


def child_serve(folder: Path, queries: int) -> dict:
    import faiss

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.search.engine import SearchEngine

    before = status_mb("VmRSS")
    t0 = time.perf_counter()
    engine = SearchEngine.open(folder, config=IndexConfig(use_gpu="no"))
    opened = time.perf_counter() - t0
    store = engine.store
    d = engine.manifest["dim"]
    qs = ClusteredEmbeddings(d, clusters=1000, spread=1.0, seed=0).sample(queries, QUERY_SEED)
    for q in qs:  # once to page in what the queries read: then the times are of searching, not of the disk
        engine.search_vector(q, 10)
    times, found = [], []
    for q in qs:
        t = time.perf_counter()
        found.append([h.id for h in engine.search_vector(q, 10)])
        times.append((time.perf_counter() - t) * 1000)
    rss, anon = status_mb("VmRSS"), status_mb("RssAnon")
    best_s, best_i = np.full((queries, 0), -np.inf, np.float32), np.zeros((queries, 0), np.int64)
    for shard in engine.manifest["shards"]:  # exact search, shard by shard, after the RSS was read
        table = store.read_table([shard], ["id", "embedding"])
        s, i = faiss.knn(qs, embeddings_of(table), 10, metric=faiss.METRIC_INNER_PRODUCT)
        s, i = np.hstack([best_s, s]), np.hstack([best_i, table.column("id").to_numpy()[i]])
        top = np.argsort(-s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    recall = np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, best_i)])
    return {"open_s": opened, "rss_mb": rss - before, "anon_mb": anon, "p50_ms": float(np.percentile(times, 50)),
            "recall_at_10": float(recall)}


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--factory", default="IVF512,Flat", help="an index type that can be on disk")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--group-rows", type=int, default=50_000, help="vectors per partial index (on disk)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-ondisk"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_build(Path(rest[0]), rest[1], rest[2], int(rest[3])) if kind == "build" else child_serve(Path(rest[0]),
                                                                                                 int(rest[1]))
        print(json.dumps(result))
        return
    source = args.work / f"source-{args.n}x{args.dim}"
    write_shards(source, args.n, args.dim)
    rows = {}
    for mode in ("never", "always"):
        folder = args.work / f"{mode}-{args.n}x{args.dim}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(source, folder)
        rows[mode] = run_child("build", folder, args.factory, mode, args.group_rows) | run_child("serve", folder, args.queries)
    print(f"{args.factory} over {args.n:,} x {args.dim} synthetic vectors; {args.queries} fresh queries; "
          f"on disk: partial indexes of {args.group_rows:,} vectors")
    print(f"{'':26}{'in RAM':>12}{'on disk':>12}")
    for key, label, fmt in [("build_s", "build + tune, s", "{:.1f}"), ("build_peak_mb", "build peak RSS, MiB", "{:.0f}"),
                            ("build_anon_mb", "build peak RssAnon, MiB", "{:.0f}"),
                            ("files_mb", "index files, MiB", "{:.0f}"), ("open_s", "engine open, s", "{:.2f}"),
                            ("rss_mb", "serving RSS growth, MiB", "{:.0f}"),
                            ("anon_mb", "serving RssAnon, MiB", "{:.0f}"), ("p50_ms", "query p50 (warm), ms", "{:.2f}"),
                            ("recall_at_10", "recall@10", "{:.3f}"), ("tuning", "tuned", "{}")]:
        print(f"{label:26}" + "".join(f"{fmt.format(rows[m][key]):>12}" for m in ("never", "always")))


if __name__ == "__main__":
    main()
