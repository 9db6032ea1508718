#!/usr/bin/env python
"""Filtered search: recall@10 against exact filtered search, and single-query latency, by selectivity.

Builds (once, under --work) an index folder of N seeded CNN-like 1280-d
vectors (indexer/synthetic.py, as scripts/bench_search.py) published through
the automatic FAISS index like any index.  Each row gets a label drawn at
random, independently of its vector (the hard case: a filter that follows
the clusters is easier): a 0.1 %, b 0.9 %, c 9 %, d 40 %, e 50 %, so the
filters label=a, label=a,b, label=a,b,c and label=a,b,c,d select 0.1 %, 1 %,
10 % and 50 % of the rows.

Then, in this one run, for the unfiltered query and each filter: recall@10 of
``SearchEngine.search_vector(q, 10, filter=...)`` against exact search over
the selected rows (brute force over the shards' vectors), and the p50 / p90
of single queries (the filter's rows cached, as a server holds them for
repeated filters; ``first`` is the first query's time, which computes them).

    python scripts/bench_filters.py --n 100000
    python scripts/bench_filters.py --n 1000000 --work /tmp/imgsearch-bench-filters
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.indexer.folder.store import FILE_COLUMNS, EmbeddingStore, embeddings_of  # noqa: E402
from imgsearch.indexer.synthetic import ClusteredEmbeddings, synthetic_manifest  # noqa: E402
from scripts.synthetic_shards import synthetic_table  # noqa: E402

CHUNK = 50_000  # vectors made at once
SHARD = 25_000  # rows per shard
SHARES = {"a": 0.001, "b": 0.009, "c": 0.09, "d": 0.4, "e": 0.5}
FILTERS = {"50 %": ["a", "b", "c", "d"], "10 %": ["a", "b", "c"], "1 %": ["a", "b"], "0.1 %": ["a"]}


def build(folder: Path, n: int, d: int, clusters: int) -> None:
    from imgsearch.indexer.publish.version import publish_index

    if (folder / "manifest.json").is_file():
        return
    t0 = time.perf_counter()
    store = EmbeddingStore(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = synthetic_manifest(d)
    gen = ClusteredEmbeddings(d, clusters=clusters, spread=1.0, seed=0)
    rng = np.random.default_rng(11)
    names, shares = list(SHARES), np.cumsum(list(SHARES.values()))
    shards = []
    for i, start in enumerate(range(0, n, CHUNK)):
        vectors = gen.sample(min(CHUNK, n - start), seed=1_000_003 + i)
        for s in range(0, len(vectors), SHARD):
            rows = vectors[s:s + SHARD]
            m = len(rows)
            ids = np.arange(start + s, start + s + m)
            labels = np.array(names)[np.minimum(np.searchsorted(shares, rng.random(m), side="right"), 4)]
            table = synthetic_table(ids, rows, (f"/synthetic/{j}.jpg" for j in ids), labels.tolist(), rng)
            shards.append(store.write_table(table))
    made = time.perf_counter() - t0
    manifest = publish_index(store, dict(manifest, file_columns=list(FILE_COLUMNS)), shards)
    print(f"built {n:,} x {d} vectors ({made:.0f} s to make and write), {manifest['index_type']} in "
          f"{manifest['ann']['seconds']:.0f} s; tuned {manifest['ann']['tuning']}", flush=True)


def exact_truth(store: EmbeddingStore, shards: list[str], queries: np.ndarray, k: int) -> dict:
    """{filter name: (q, k) row ids} by brute force over each shard's selected rows, merged shard by shard."""
    best = {name: (np.full((len(queries), 0), -np.inf, np.float32), np.zeros((len(queries), 0), np.int64))
            for name in [None, *FILTERS]}
    for shard in shards:
        table = store.read_table([shard], ["id", "label", "embedding"])
        ids, labels = table.column("id").to_numpy(), np.array(table.column("label").to_pylist())
        scores = queries @ embeddings_of(table).T  # (q, s)
        for name in best:
            keep = np.ones(len(ids), bool) if name is None else np.isin(labels, FILTERS[name])
            s = np.concatenate([best[name][0], scores[:, keep]], axis=1)
            i = np.concatenate([best[name][1], np.broadcast_to(ids[keep], (len(queries), keep.sum()))], axis=1)
            top = np.argsort(-s, axis=1)[:, :k]
            best[name] = (np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1))
    return {name: found for name, (_, found) in best.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="vectors (1000000 for the README's figures)")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-filters"))
    args = ap.parse_args()
    from imgsearch.search.query import filter_index as filtered
    from imgsearch.search.engine import SearchEngine

    folder = args.work / f"index-{args.n}"
    build(folder, args.n, args.dim, args.clusters)
    engine = SearchEngine.open(folder)
    queries = ClusteredEmbeddings(args.dim, clusters=args.clusters, spread=1.0, seed=0).sample(args.queries, 424242)
    t0 = time.perf_counter()
    truth = exact_truth(engine.store, engine.manifest["shards"], queries, 10)
    print(f"{engine.manifest['index_type']}, {len(engine):,} vectors; exact filtered truth in "
          f"{time.perf_counter() - t0:.0f} s; exact search over the selection up to {filtered.EXACT_MAX:,} rows",
          flush=True)
    for q in queries[:20]:  # warm up: page in the index, the metadata columns
        engine.search_vector(q, 10)
    t0 = time.perf_counter()
    engine.filtered.columns()
    print(f"metadata columns read in {time.perf_counter() - t0:.2f} s", flush=True)
    print(f"{'filter':>10} {'selected':>9} {'path':>7} {'recall@10':>9} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'x unfiltered':>12} {'first ms':>8}")
    base_p50 = None
    for name in [None, *FILTERS]:
        flt = None if name is None else {"label": FILTERS[name]}
        t0 = time.perf_counter()
        engine.search_vector(queries[0], 10, filter=flt)
        first = (time.perf_counter() - t0) * 1000
        times, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            hits = engine.search_vector(q, 10, filter=flt)
            times.append((time.perf_counter() - t0) * 1000)
            found.append([h.id for h in hits])
        recall = np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth[name])])
        p50, p90 = np.percentile(times, 50), np.percentile(times, 90)
        base_p50 = base_p50 or p50
        count = len(engine) if flt is None else engine.filtered.select(engine_filter(flt)).count
        path = "-" if flt is None else ("exact" if count <= filtered.EXACT_MAX else "ann")
        print(f"{name or 'none':>10} {count:>9,} {path:>7} {recall:>9.3f} {p50:>7.2f} {p90:>7.2f} "
              f"{p50 / base_p50:>12.2f} {first:>8.1f}", flush=True)


def engine_filter(flt):
    from imgsearch.search.query.filters import as_filter

    return as_filter(flt)


if __name__ == "__main__":
    main()
