#!/usr/bin/env python
"""Search at scale: every index type imgsearch offers, and autofaiss, on the same vectors in one run.

The vectors (made once under --work, memory-mapped .npy) are seeded synthetic
embeddings shaped like a CNN's (indexer/synthetic.py): a Gaussian mixture of
--clusters centres in a 64-dimensional latent space, mapped to --dim
dimensions by a fixed random linear layer and a ReLU, L2-normalised.  Test
queries are 1,000 fresh draws from the same mixture (not in the index);
their exact top-10 is the ground truth.

For each index type: build time (training + adding), bytes per vector in
RAM (and on disk when re-ranking keeps full vectors memory-mapped), tuned
search parameters (imgsearch's own tuning: held-back indexed vectors,
target recall@10), then on the test queries: recall@10, batch QPS and
single-query p50 latency.  Then autofaiss builds its own choice with the
same memory budget (in its own virtualenv: it pins numpy<2) and is measured
by the same code.

    python scripts/bench_search.py --n 1000000 --memory 1G
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsearch.indexer import ann  # noqa: E402
from imgsearch.indexer.atomic import atomic_path  # noqa: E402
from imgsearch.indexer.config import parse_memory  # noqa: E402
from imgsearch.indexer.synthetic import ClusteredEmbeddings  # noqa: E402

CHUNK = 50_000


def make_vectors(work: Path, n: int, d: int, clusters: int, spread: float, n_queries: int):
    """(base memmap (n, d), test queries (q, d), ground truth (q, 10)), cached under work."""
    tag = f"{n}x{d}-c{clusters}-s{spread}"
    base_dir = work / f"emb-{tag}"  # autofaiss reads every .npy in a folder
    base_path = base_dir / "base.npy"
    gen = ClusteredEmbeddings(d, clusters=clusters, spread=spread, seed=0)
    if not base_path.exists():
        base_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with atomic_path(base_path) as tmp:  # ".base.npy.PID.tmp": autofaiss never reads it as a .npy
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
            start = 0
            for chunk in gen.chunks(n, seed=1, chunk=CHUNK):
                out[start:start + len(chunk)] = chunk
                start += len(chunk)
            out.flush()
            del out
        print(f"made {n:,} x {d} vectors in {time.perf_counter() - t0:.0f} s -> {base_path}")
    base = np.load(base_path, mmap_mode="r")
    queries = gen.sample(n_queries, seed=10**9 + 7)
    truth_path = work / f"truth-{tag}-q{n_queries}.npy"
    if truth_path.exists():
        truth = np.load(truth_path)
    else:
        truth = exact_neighbours(base, queries, np.full(n_queries, -1))
        np.save(truth_path, truth)
    return base_path, base, queries, truth


def exact_neighbours(base, queries, query_ids, skip_held_out: bool = False) -> np.ndarray:
    """(q, 10) exact neighbours of ``queries`` in ``base`` (ids = row numbers), ``query_ids`` left out."""
    exact = ann.ExactNeighbours(queries, query_ids)
    for start in range(0, len(base), CHUNK):
        ids = np.arange(start, min(len(base), start + CHUNK))
        kept = ~ann.held_out(ids) if skip_held_out else slice(None)
        exact.add(ids[kept], np.asarray(base[start:start + CHUNK])[kept])
    return exact.result()


def tuning_set(base, n: int, work: Path, tag: str, graph: bool = False, q: int = 500):
    """Held-back indexed vectors and their exact neighbours (themselves left out), as imgsearch tunes.

    ``graph``: as a graph index is tuned, before the held-out rows are in it (ann.is_graph).
    """
    path = work / f"tuning-{tag}-heldout{'-graph' if graph else ''}.npz"
    positions = ann.tuning_positions(np.arange(n), q)  # held out of training, as imgsearch does
    if path.exists():
        data = np.load(path)
        return data["ids"], data["queries"], data["truth"]
    queries = np.ascontiguousarray(base[positions])
    truth = exact_neighbours(base, queries, positions, skip_held_out=graph)
    np.savez(path, ids=positions, queries=queries, truth=truth)
    return positions, queries, truth


def add_rows(index, base, n: int, which=None) -> None:
    """Add base rows to ``index`` in chunks (ids = row numbers); ``which``: a mask function of the ids."""
    for start in range(0, n, CHUNK):
        ids = np.arange(start, min(n, start + CHUNK))
        kept = which(ids) if which else slice(None)
        index.add_with_ids(np.ascontiguousarray(np.asarray(base[start:start + CHUNK])[kept]), ids[kept])


def measure_queries(index, queries, truth, single: int) -> dict:
    t0 = time.perf_counter()
    _, found = index.search(queries, 10)  # (q, 10)
    batch_qps = len(queries) / (time.perf_counter() - t0)
    times = []
    for q in queries[:single]:
        t0 = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - t0)
    return {"recall_at_10": ann.recall_at_k(found, truth), "batch_qps": batch_qps,
            "p50_ms": float(np.median(times) * 1e3)}


def bench_imgsearch(factory, base, n, d, work, tune_data, queries, truth, target, single, graph_tune_data=None) -> dict:
    t0 = time.perf_counter()
    index = ann.new_index(factory, d)
    if not index.is_trained:
        positions = ann.training_positions(np.arange(n), factory)
        ann.train(index, np.ascontiguousarray(base[positions]))
    train_s = time.perf_counter() - t0
    graph_tuning = None
    if ann.is_graph(factory):  # as imgsearch builds a graph: tuned before its held-out rows go in
        add_rows(index, base, n, lambda ids: ~ann.held_out(ids))
        tune_s = time.perf_counter()
        graph_tuning = ann.tune(index, *graph_tune_data, target)
        t0 += time.perf_counter() - tune_s  # build time excludes tuning, as for the other types
        add_rows(index, base, n, ann.held_out)
    else:
        add_rows(index, base, n)
    build_s = time.perf_counter() - t0
    path = work / "bench-index.faiss"
    faiss.write_index(index, str(path))
    del index
    disk = path.stat().st_size
    mode = ann.mmap_mode(factory, disk)  # open it as the search engine does
    flags = {None: 0, "lists": faiss.IO_FLAG_MMAP, "codes": faiss.IO_FLAG_MMAP_IFC}[mode]
    index = faiss.read_index(str(path), flags | (faiss.IO_FLAG_READ_ONLY if mode else 0))
    ram = disk - (n * d * 4 if factory.endswith(",RFlat") else 0)  # re-ranking vectors stay mapped on disk
    tune_ids, tune_q, tune_truth = tune_data
    if graph_tuning:
        ann.set_search_params(index, graph_tuning.params)
    tuning = graph_tuning or (ann.tune(index, tune_q, tune_ids, tune_truth, target)
                              if not ann.is_exact(factory) else None)
    result = measure_queries(index, queries, truth, single if not ann.is_exact(factory) else min(single, 20))
    path.unlink()
    return {"index": factory, "build_s": build_s, "train_s": train_s, "ram_bytes_per_vector": ram / n,
            "disk_bytes_per_vector": disk / n, "params": tuning.params if tuning else {},
            "tuned_recall": tuning.recall if tuning else 1.0, **result}


AUTOFAISS_RUN = r'''
import json, sys, time, numpy as np, faiss
from autofaiss import build_index
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
index, infos = build_index(embeddings=args["emb"], index_path=args["index"], index_infos_path=args["infos"],
                           max_index_memory_usage=args["memory"], current_memory_available=args["available"],
                           metric_type="ip", nb_cores=args["cores"], verbose=20)
build_s = time.perf_counter() - t0
queries = np.load(args["queries"]); truth = np.load(args["truth"])
index = faiss.read_index(args["index"])
if infos.get("index_param"):
    faiss.ParameterSpace().set_index_parameters(index, infos["index_param"])
t0 = time.perf_counter(); _, found = index.search(queries, 10); qps = len(queries) / (time.perf_counter() - t0)
times = []
for q in queries[:args["single"]]:
    t = time.perf_counter(); index.search(q[None], 10); times.append(time.perf_counter() - t)
import os
n = index.ntotal
recall = float(np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth)]))
print(json.dumps({"index": infos.get("index_key"), "params": infos.get("index_param"), "build_s": build_s,
                  "ram_bytes_per_vector": os.path.getsize(args["index"]) / n,
                  "disk_bytes_per_vector": os.path.getsize(args["index"]) / n,
                  "recall_at_10": recall, "batch_qps": qps, "p50_ms": float(np.median(times) * 1e3)}))
'''


def bench_autofaiss(python: Path, base_dir: Path, work: Path, queries, truth, memory: str, single: int) -> dict:
    np.save(work / "queries.npy", queries)
    np.save(work / "truth.npy", truth)
    args = {"emb": str(base_dir), "index": str(work / "autofaiss.index"), "infos": str(work / "autofaiss.json"),
            "memory": memory, "available": "12G", "cores": os.cpu_count(), "queries": str(work / "queries.npy"),
            "truth": str(work / "truth.npy"), "single": single}
    log = work / "autofaiss.log"  # its own progress and stage timings
    with open(log, "w") as err:
        out = subprocess.run([str(python), "-c", AUTOFAISS_RUN, json.dumps(args)], stdout=subprocess.PIPE,
                             stderr=err, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"autofaiss failed, see {log}:\n{log.read_text()[-3000:]}")
    (work / "autofaiss.index").unlink(missing_ok=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_autofaiss(work: Path) -> Path:
    """autofaiss in its own virtualenv (it pins numpy<2, which TensorFlow's environment cannot take)."""
    venv = work / "autofaiss-venv"
    python = venv / "bin" / "python"
    if not (python.exists() and subprocess.run([str(python), "-c", "import autofaiss"]).returncode == 0):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # autofaiss 2.18 pins numpy<2 (so pyarrow is held back with it) and calls faiss.OPQMatrix with
        # keywords faiss 1.9+ no longer take: it runs with the faiss of its time
        subprocess.run([str(python), "-m", "pip", "install", "-q", "autofaiss", "pyarrow<18", "faiss-cpu<1.9"],
                       check=True)
    return python


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-search"))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--spread", type=float, default=1.0,
                    help="within-cluster spread; 1.0 makes clusters overlap (IVF needs nprobe ~16 of 1024 "
                         "lists for recall 0.95 at 100k), 0.5 separates them (nprobe 1 suffices)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time for p50")
    ap.add_argument("--memory", default="1G", help="memory budget for imgsearch's choice and autofaiss")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--types", default="Flat,HNSW32,IVF-Flat,IVF-SQ8,IVF-PQ,auto",
                    help="comma-separated: Flat, HNSW32, IVF-Flat, IVF-SQ8, IVF-PQ, auto, auto-in-RAM, "
                         "or factory strings")
    ap.add_argument("--no-autofaiss", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    n, d = args.n, args.dim
    budget = parse_memory(args.memory)

    base_path, base, queries, truth = make_vectors(args.work, n, d, args.clusters, args.spread, args.queries)
    tag = f"{n}x{d}-c{args.clusters}-s{args.spread}"
    tune_data = tuning_set(base, n, args.work, tag)
    nlist = ann.nlist_for(n)
    auto = ann.with_rerank(ann.choose_index(n, d, budget), None)
    pq = auto if "PQ" in auto else ann.with_rerank(ann.choose_index(n, d, int(0.2 * n * d)), True)
    # IVF-Flat and IVF-SQ8 are what "auto" picks when re-ranking is turned off
    # auto-in-RAM: imgsearch's choice with --no-rerank, everything in RAM within the budget (as autofaiss counts)
    named = {"IVF-Flat": f"IVF{nlist},Flat", "IVF-SQ8": f"IVF{nlist},SQ8", "IVF-PQ": pq, "auto": auto,
             "auto-in-RAM": ann.choose_index(n, d, budget, False)}
    print(f"{n:,} vectors x {d}, {args.clusters} clusters, spread {args.spread}; {args.queries} test queries; budget {args.memory}; "
          f"{os.cpu_count()} cores; faiss {faiss.__version__}; imgsearch's choice for the budget: {auto}")
    rows = []
    header = f"{'index':34s} {'build s':>8s} {'RAM B/vec':>9s} {'disk B/vec':>10s} {'recall@10':>9s} " \
             f"{'batch QPS':>9s} {'p50 ms':>7s}  params"
    print(header)
    for name in dict.fromkeys(t.strip() for t in args.types.split(",") if t.strip()):
        factory = named.get(name, name)
        if name != "auto" and factory == auto and "auto" in args.types:
            continue  # measured once, as "auto"
        graph_data = None
        if ann.is_graph(factory):
            ids, q, t = tuning_set(base, n, args.work, tag, graph=True)
            graph_data = (q, ids, t)
        r = bench_imgsearch(factory, base, n, d, args.work, tune_data, queries, truth, args.target_recall,
                            args.single, graph_data)
        r["label"] = f"{name}: {factory}" if name.startswith("auto") else factory
        rows.append(r)
        print(f"{r['label']:34s} {r['build_s']:8.1f} {r['ram_bytes_per_vector']:9.0f} "
              f"{r['disk_bytes_per_vector']:10.0f} {r['recall_at_10']:9.3f} {r['batch_qps']:9.0f} "
              f"{r['p50_ms']:7.2f}  {r['params']}", flush=True)
    if not args.no_autofaiss:
        python = ensure_autofaiss(args.work)
        r = bench_autofaiss(python, base_path.parent, args.work, queries, truth, args.memory, args.single)
        r["label"] = "autofaiss: " + r["index"]
        rows.append(r)
        print(f"{r['label']:34s} {r['build_s']:8.1f} {r['ram_bytes_per_vector']:9.0f} "
              f"{r['disk_bytes_per_vector']:10.0f} {r['recall_at_10']:9.3f} {r['batch_qps']:9.0f} "
              f"{r['p50_ms']:7.2f}  {r['params']}")
        def auto_rows(rs):  # imgsearch's own choices, with and without re-ranking
            return [x for x in rs if x["label"].split(":")[0] in ("auto", "auto-in-RAM")]
        ours = auto_rows(rows)
        if not ours and args.json and args.json.exists():  # imgsearch's rows from an earlier run
            ours = auto_rows(json.loads(args.json.read_text()))
        for o in ours:
            print(f"\nimgsearch {o['label']} vs autofaiss, same budget {args.memory}:")
            print(f"  RAM per vector   {o['ram_bytes_per_vector']:.0f} vs {r['ram_bytes_per_vector']:.0f} B "
                  f"(target: equal or lower)")
            print(f"  recall@10        {o['recall_at_10']:.3f} vs {r['recall_at_10']:.3f} (target: >= 0.95)")
            print(f"  single-query p50 {o['p50_ms']:.2f} vs {r['p50_ms']:.2f} ms (target: <= autofaiss)")
            print(f"  build time       {o['build_s']:.0f} vs {r['build_s']:.0f} s = "
                  f"{o['build_s'] / r['build_s']:.3g}x (target: <= 1.5x)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
