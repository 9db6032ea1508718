#!/usr/bin/env python
"""Indexing throughput of the Spark engine against the local one, side by side in one run.

The same folder of JPEG photos (bench_index.py's generator: skimage photos
cropped and resized to photo-folder sizes) is indexed from scratch by

  local       `imgsearch index` (decode processes + TFLite, all cores)
  local[1]    the Spark engine, Spark in local mode with one task slot
  local[2]    the Spark engine, two task slots

each in a fresh Python process, indexing the same images from scratch
several times: "cold" is the first run (the local engine loads the model and
starts its decode processes; Spark's Python workers start and load the
model, after the session, whose start (JVM) is shown apart), "warm" the best
of the next runs in the same process (start-up paid already, as in a long
job).  The engines alternate over ``--rounds`` rounds and the best of each
counts, so a moment of load from elsewhere does not favour one.  Printed:
images/s of each, the ratio to the local engine, and the Spark overhead,
1 - spark/local.

    python scripts/bench_spark.py --images 1000 --work /tmp/imgsearch-bench-spark
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LOCAL = """
import json, shutil, sys, time
from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.run.pipeline import index_images
out = {}
for run in ["cold"] + ["warm"] * int(sys.argv[4]):
    shutil.rmtree(sys.argv[2], ignore_errors=True)
    t = time.perf_counter()
    s = index_images([sys.argv[1]], sys.argv[2], IndexConfig(progress=False, batch_size=int(sys.argv[3])))
    r = {"images": s.added, "seconds": time.perf_counter() - t, "startup": s.startup_seconds}
    if run not in out or r["seconds"] < out[run]["seconds"]:
        out[run] = r
print(json.dumps(out))
"""

SPARK = """
import json, shutil, sys, time
from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.spark.images import index_images_spark, spark_session
config = IndexConfig(progress=False, batch_size=int(sys.argv[3]), spark_master=sys.argv[5])
t = time.perf_counter()
spark = spark_session(config, {"spark.ui.enabled": "false"})
out = {"session_seconds": time.perf_counter() - t}
for run in ["cold"] + ["warm"] * int(sys.argv[4]):
    shutil.rmtree(sys.argv[2], ignore_errors=True)
    t = time.perf_counter()
    s = index_images_spark([sys.argv[1]], sys.argv[2], config, spark=spark)
    r = {"images": s.added, "seconds": time.perf_counter() - t, "job_seconds": s.spark_seconds,
         "tasks": s.tasks, "task_size": s.task_size, "executor_seconds": s.executor_seconds,
         "model_seconds": s.model_seconds, "worker_peak_rss_mb": s.worker_peak_rss_mb}
    if run not in out or r["seconds"] < out[run]["seconds"]:
        out[run] = r
print(json.dumps(out))
"""


def child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-spark"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--masters", default="local[1],local[2]", help="comma-separated Spark masters to measure")
    ap.add_argument("--rounds", type=int, default=2, help="measure every engine this many times, alternating")
    ap.add_argument("--warm", type=int, default=2, help="warm runs per process (the best counts)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_index import make_photos

    photos = make_photos(args.work / "photos-all", args.images)
    folder = args.work / f"photos-{args.images}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for p in photos:
            os.link(p, folder / p.name)
    index_dir = str(args.work / "index")
    batch = str(args.batch_size)
    print(f"{len(photos)} JPEG photos; {os.cpu_count()} cores; efficientnet-lite0, batch {batch}", flush=True)

    masters = args.masters.split(",")
    runs: dict[str, list[dict]] = {"local": [], **{m: [] for m in masters}}
    for round_ in range(args.rounds):  # engines alternate, so a busy moment does not favour one
        shutil.rmtree(index_dir, ignore_errors=True)
        runs["local"].append(child(LOCAL, str(folder), index_dir, batch, str(args.warm)))
        for master in masters:
            runs[master].append(child(SPARK, str(folder), index_dir, batch, str(args.warm), master))
        print(f"round {round_ + 1} of {args.rounds} done", flush=True)

    def best(results: list[dict], run: str) -> dict:
        return min((r[run] for r in results), key=lambda r: r["seconds"])

    def rate(r: dict) -> float:
        return r["images"] / r["seconds"]

    local_cold, local_warm = best(runs["local"], "cold"), best(runs["local"], "warm")
    print(f"local engine   cold: {rate(local_cold):7.1f} img/s ({local_cold['seconds']:.1f} s, "
          f"{local_cold['startup']:.1f} s of it start-up: fresh process, model, decode processes)")
    print(f"               warm: {rate(local_warm):7.1f} img/s ({local_warm['seconds']:.1f} s, model loaded)")
    for master in masters:
        cold, warm = best(runs[master], "cold"), best(runs[master], "warm")
        session = min(r["session_seconds"] for r in runs[master])
        with_session = cold["images"] / (cold["seconds"] + session)
        print(f"spark {master:9s}cold: {rate(cold):7.1f} img/s ({cold['seconds']:.1f} s; {cold['tasks']} tasks of "
              f"{cold['task_size']})  {rate(cold) / rate(local_cold):.2f}x local cold")
        print(f"  + session start {session:4.1f} s: {with_session:7.1f} img/s  {with_session / rate(local_cold):.2f}x local cold")
        print(f"               warm: {rate(warm):7.1f} img/s ({warm['seconds']:.1f} s; Spark job {warm['job_seconds']:.1f} s, "
              f"tasks busy {warm['executor_seconds']:.1f} s, of which the model {warm['model_seconds']:.1f} s)  "
              f"{rate(warm) / rate(local_warm):.2f}x local warm, overhead {1 - rate(warm) / rate(local_warm):+.0%}")
        print(f"               largest Python worker: {warm['worker_peak_rss_mb']:.0f} MB peak RSS")
    results = runs
    shutil.rmtree(index_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
