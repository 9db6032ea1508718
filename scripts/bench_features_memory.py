#!/usr/bin/env python
"""What the duplicates verifier's side table costs in memory at N images: mapped, never read whole.

Writes (once, under --work) a side table (``indexer/folder/features.py``) of N
rows, each the stored features of one of SOURCE's images (an index folder
with stored local features, e.g. the emoji demo's), cycled, ids 0..N-1; then,
in a fresh process, does what ``imgsearch duplicates`` does with it: maps it,
finds the ids whose stored sha256 is current (against N sha256 as the shards
would give them), and judges --pairs random pairs in one process per core
(``parallel.compare_pairs`` with the map: the processes are sent ids).  It
prints the process's own memory (peak RssAnon, sampled every 0.2 s) at each
step and the file pages mapped (RssFile).

    python scripts/bench_features_memory.py --rows 1000000 --source /tmp/emoji-idx --work /tmp/imgsearch-bench-features
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_duplicates_scale import AnonPeak, _status  # noqa: E402  (this folder is on sys.path: the script's own)


def build(folder: Path, rows: int, source: Path) -> None:
    from imgsearch.indexer.folder.features import FEATURES_FILE, read_features, write_features

    if (folder / FEATURES_FILE).is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stored = read_features(source)
    pictures = sorted(stored)
    made = [stored[p][1] for p in pictures]
    size = write_features(folder, ((j, f"{j:064x}", made[j % len(made)]) for j in range(rows)))
    print(f"side table of {rows:,} rows ({len(made):,} pictures of {source}, cycled): {size / 2**30:.2f} GiB "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)


def measure(folder: Path, rows: int, pairs: int, out: Path) -> None:
    import pyarrow as pa

    from imgsearch.indexer.folder.features import read_features
    from imgsearch.search.duplicates.parallel import compare_pairs, default_workers

    anon = AnonPeak()
    steps = {"start": _status()["RssAnon"]}
    t0 = time.perf_counter()
    stored = read_features(folder)
    steps["mapped"], mapped_s = _status()["RssAnon"], time.perf_counter() - t0
    ids = np.arange(rows, dtype=np.int64)
    current = stored.current(ids, pa.array([f"{j:064x}" for j in range(rows)]))
    steps["current"] = _status()["RssAnon"]
    assert len(current) == rows
    rng = np.random.default_rng(0)
    asked = [(int(a), int(b)) for a, b in rng.integers(0, rows, (pairs, 2)) if a != b]
    t1 = time.perf_counter()
    evidence = compare_pairs(asked, lambda i: stored[i][1], None, None, (stored.path, stored.identity, current))
    judged_s = time.perf_counter() - t1
    peak = anon.stop()
    steps["judged"] = _status()["RssAnon"]
    out.write_text(json.dumps({"rows": rows, "pairs": len(evidence), "workers": default_workers(),
                               "mapped_seconds": mapped_s, "judged_seconds": judged_s, "steps": steps,
                               "peak_anon": max(peak, steps["judged"]), **_status()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-features"))
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.rows, args.pairs, args.out)
        return
    folder = args.work / f"features-{args.rows}"
    build(folder, args.rows, args.source)
    out = args.work / f"memory-{args.rows}.json"
    subprocess.run([sys.executable, __file__, "--measure", str(folder), "--rows", str(args.rows), "--pairs",
                    str(args.pairs), "--source", str(args.source), "--out", str(out)], check=True)
    r = json.loads(out.read_text())
    mib = 2**20
    s = r["steps"]
    print(f"{r['rows']:,} rows mapped in {r['mapped_seconds']:.2f} s: own memory {s['start'] / mib:.0f} MiB at "
          f"start, {s['mapped'] / mib:.0f} MiB mapped, {s['current'] / mib:.0f} MiB with the current ids, "
          f"{s['judged'] / mib:.0f} MiB after judging; peak {r['peak_anon'] / mib:.0f} MiB; "
          f"file pages {r['RssFile'] / mib:.0f} MiB")
    print(f"  {r['pairs']:,} random pairs judged in {r['workers']} processes from the map in "
          f"{r['judged_seconds']:.1f} s ({r['judged_seconds'] / r['pairs'] * 1000:.2f} ms a pair)")


if __name__ == "__main__":
    main()
