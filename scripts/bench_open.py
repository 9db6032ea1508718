#!/usr/bin/env python
"""Opening a 10-million-image index (issue 19, point 3): open time and the engine's metadata per image.

Builds once, under --dir, a published index folder of --rows rows: synthetic
metadata (paths like "photos/2024/000012345.jpg", --labels labels), seeded
CNN-like vectors of a small dimension (indexer/synthetic.py; --dim, default 8),
shards of the shipped shard size (IndexConfig.shard_size rows) written by
``EmbeddingStore.write_table`` in the real schema, and the FAISS index, tuning
and manifest made by ``publish_index`` (the automatic index type, as any folder).

Then, each in a fresh process (the same imports done before the baseline):

    engine   SearchEngine.open: wall time, RSS growth, search_id / search_vector p50
    faiss    only the FAISS index, loaded as the engine loads it (search/opening.py): its own RSS
    before   the representation of fc9042f rebuilt from the same shards: id, path, label read whole,
             texts_of lists of paths and labels, a dict from id to row (what SearchEngine.__init__ held)
    old-tree (with --old-tree DIR, a checkout of an older commit) that tree's SearchEngine.open

and prints them side by side: the engine's metadata is its RSS growth less the
FAISS index's.  RSS is read from /proc/self/status after Arrow's pool has
returned what it no longer uses (both figures are printed).

    python scripts/bench_open.py --dir /tmp/imgsearch-bench-open
    python scripts/bench_open.py --rows 1000000 --dir /tmp/imgsearch-bench-open-1m
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 50_000  # vectors made at once
WARM = "warm-up"  # a 2,000-row folder beside the measured one, opened before the baseline


def build(folder: Path, n: int, d: int, labels: int) -> None:
    import numpy as np

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.store import FILE_COLUMNS, EmbeddingStore
    from imgsearch.indexer.publish.version import publish_index
    from imgsearch.indexer.synthetic import ClusteredEmbeddings, synthetic_manifest
    from scripts.synthetic_shards import synthetic_table

    if (folder / "manifest.json").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    store = EmbeddingStore(folder)
    shard_rows = IndexConfig().shard_size
    gen = ClusteredEmbeddings(d, clusters=1000, latent=min(16, d), spread=1.0, seed=0)
    names = np.array([f"class-{i:03d}" for i in range(labels)])
    rng = np.random.default_rng(3)
    shards = []
    for c, start in enumerate(range(0, n, CHUNK)):
        vectors = gen.sample(min(CHUNK, n - start), seed=1_000_003 + c)
        for s in range(0, len(vectors), shard_rows):
            rows = vectors[s:s + shard_rows]
            m, first = len(rows), start + s
            ids = np.arange(first, first + m)
            table = synthetic_table(ids, rows, (f"photos/2024/{j:09d}.jpg" for j in ids),
                                    names[rng.integers(0, labels, m)].tolist(), rng)
            shards.append(store.write_table(table))
        if c % 20 == 0:
            print(f"  {start + len(vectors):,} rows written ({time.perf_counter() - t0:.0f} s)", flush=True)
    written = time.perf_counter() - t0
    manifest = publish_index(store, dict(synthetic_manifest(d), file_columns=list(FILE_COLUMNS)), shards)
    print(f"built {n:,} x {d} in {len(shards):,} shards: written in {written:.0f} s, {manifest['index_type']} "
          f"published in {time.perf_counter() - t0 - written:.0f} s; {_disk(folder) / 1e9:.2f} GB on disk",
          flush=True)


def _disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _released_rss() -> int:
    """RSS once Arrow's pool and Python's collector have given back what nothing holds any more."""
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    return _rss()


def _p50_ms(fn, args) -> float:
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def measure(folder: Path, what: str) -> dict:
    """In this fresh process: one of the measurements the module docstring lists."""
    import faiss  # noqa: F401 - imported before the baseline, as every variant needs it
    import numpy as np
    import pyarrow.parquet  # noqa: F401
    if what == "old-tree":  # the older tree's engine: the caller put that tree first on sys.path
        from imgsearch.search.engine import SearchEngine
    else:
        from imgsearch.indexer.config import IndexConfig
        from imgsearch.indexer.folder.manifest import backbone_name
        from imgsearch.indexer.folder.store import EmbeddingStore
        from imgsearch.indexer.folder.texts import texts_of
        from imgsearch.search.engine import SearchEngine
        from imgsearch.search.opening import _load_index
    # the modules opening imports on the way (pandas, FAISS's helpers: ~75 MB) are loaded by one open of a
    # small folder first, so that what is measured is what this folder costs
    SearchEngine.open(folder.parent / f"{WARM}-{folder.name}")
    base, t0 = _released_rss(), time.perf_counter()
    out: dict = {}
    if what in ("engine", "old-tree"):
        engine = SearchEngine.open(folder)
        out["open_s"] = time.perf_counter() - t0
        out["raw_rss"], out["rss"] = _rss() - base, _released_rss() - base
        rng = np.random.default_rng(0)
        ids = engine.ids[rng.integers(0, len(engine), 200)].tolist()
        engine.search_id(ids[0], k=10)  # first query: whitening / tuning state read once
        out["search_id_ms"] = _p50_ms(lambda i: engine.search_id(i, k=10), ids)
        vectors = [engine.vector(i) for i in ids[:100]]
        out["search_vector_ms"] = _p50_ms(lambda v: engine.search_vector(v, k=10), vectors)
        out["get_ms"] = _p50_ms(engine.get, ids)
        if hasattr(engine, "catalog"):
            out["catalog_bytes"] = engine.catalog.nbytes
            many = np.asarray(ids * 50)
            t = time.perf_counter()
            engine.catalog.rows(many)
            out["rows_ns"] = (time.perf_counter() - t) / len(many) * 1e9
            out["row_us"] = _p50_ms(engine.catalog.row, ids) * 1000
        out["n"] = len(engine)
    elif what == "faiss":
        store = EmbeddingStore(folder)
        manifest = store.read_manifest()
        index, _ = _load_index(store, manifest, IndexConfig(backbone=backbone_name(manifest)))
        out["open_s"] = time.perf_counter() - t0
        out["raw_rss"], out["rss"] = _rss() - base, _released_rss() - base
        out["n"] = index.ntotal
    elif what == "before":  # fc9042f's SearchEngine.__init__ over fc9042f's open_version's read
        store = EmbeddingStore(folder)
        metadata = store.read_table(store.read_manifest()["shards"], ["id", "path", "label"])
        ids = metadata.column("id").to_numpy()
        paths, labels = texts_of(metadata, "path"), texts_of(metadata, "label")
        row_of = {int(i): r for r, i in enumerate(ids)}
        del metadata
        out["open_s"] = time.perf_counter() - t0  # the metadata part of opening only
        out["raw_rss"], out["rss"] = _rss() - base, _released_rss() - base
        probe = ids[np.random.default_rng(0).integers(0, len(ids), 200)].tolist()
        out["row_us"] = _p50_ms(row_of.get, probe) * 1000
        out["n"] = len(paths) + 0 * len(labels)
    return out


def run(folder: Path, what: str, old_tree: Path | None = None) -> dict:
    tree = old_tree if what == "old-tree" else ROOT
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = (f"import sys, json; sys.path[:0] = [{str(tree)!r}, {str(ROOT / 'scripts')!r}]; import bench_open; "
            f"print(json.dumps(bench_open.measure(bench_open.Path({str(folder)!r}), {what!r})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode:
        raise SystemExit(f"{what}: failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--dir", type=Path, default=Path("/tmp/imgsearch-bench-open"))
    p.add_argument("--old-tree", type=Path, default=None,
                   help="a checkout of an older commit (git worktree add DIR fc9042f): its SearchEngine.open too")
    p.add_argument("--skip-before", action="store_true", help="leave out the rebuilt fc9042f representation")
    args = p.parse_args()
    folder = args.dir / f"n{args.rows}-d{args.dim}"
    sys.path.insert(0, str(ROOT))
    build(folder, args.rows, args.dim, args.labels)
    build(args.dir / f"{WARM}-{folder.name}", 2000, args.dim, args.labels)
    results = {"faiss": run(folder, "faiss"), "engine": run(folder, "engine")}
    if not args.skip_before:
        results["before"] = run(folder, "before")
    if args.old_tree:
        results["old-tree"] = run(folder, "old-tree", args.old_tree)
    n, faiss_rss = results["engine"]["n"], results["faiss"]["rss"]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())  # times grow with what else runs on the cores
    print(f"\n{n:,} rows, d={args.dim}, {_disk(folder) / 1e9:.2f} GB on disk; the FAISS index alone: "
          f"{faiss_rss / 1e6:.0f} MB RSS, {results['faiss']['open_s']:.2f} s; load average {load} "
          f"on {os.cpu_count()} cores\n")
    print(f"{'':34}{'open s':>8}{'metadata B/image':>18}{'(raw RSS)':>11}{'search_id p50':>15}"
          f"{'search_vector p50':>19}{'get p50':>9}")
    for what, label in (("engine", "columnar (search/catalog.py)"), ("before", "fc9042f's, rebuilt (metadata only)"),
                        ("old-tree", f"old tree {args.old_tree}")):
        r = results.get(what)
        if r is None:
            continue
        less = faiss_rss if what != "before" else 0
        raw_less = results["faiss"]["raw_rss"] if what != "before" else 0
        ms = lambda key: f"{r[key]:.2f} ms" if key in r else "-"  # noqa: E731
        print(f"{label:34}{r['open_s']:8.2f}{(r['rss'] - less) / n:18.1f}{(r['raw_rss'] - raw_less) / n:11.1f}"
              f"{ms('search_id_ms'):>15}{ms('search_vector_ms'):>19}{ms('get_ms'):>9}")
    e = results["engine"]
    print(f"\nthe catalog's arrays: {e['catalog_bytes'] / n:.1f} B/image; id -> row: {e['row_us']:.2f} us one id, "
          f"{e['rows_ns']:.0f} ns per id in a batch"
          + (f" (a dict: {results['before']['row_us']:.2f} us)" if "before" in results else ""))
    ratio = results["before"]["rss"] / max(e["rss"] - faiss_rss, 1) if "before" in results else None
    if ratio:
        print(f"metadata memory, fc9042f / columnar: {ratio:.0f}x; open targets: < 5 s "
              f"({'met' if e['open_s'] < 5 else 'NOT met'}), < 60 B/image "
              f"({'met' if (e['rss'] - faiss_rss) / n < 60 else 'NOT met'})")


if __name__ == "__main__":
    main()
