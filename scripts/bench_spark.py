#!/usr/bin/env python
"""Indexing throughput of the Spark engine against the local one, side by side in one run.

The same folder of JPEG photos (bench_index.py's generator: skimage photos
cropped and resized to photo-folder sizes) is indexed from scratch by

  local       `imgsearch index` (decode processes + TFLite, all cores)
  local[1]    the Spark engine, Spark in local mode with one task slot
  local[2]    the Spark engine, two task slots

each in a fresh Python process.  For Spark, the session is started first
(JVM), then the same images are indexed twice in that session: "cold" (the
Python workers start and load the model) and "warm" (they are reused, as in a
long job, where start-up is paid once).  Printed: images/s of each, and the
Spark overhead against the local engine, 1 - spark/local.

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
import json, sys, time
from indexer.config import IndexConfig
from indexer.pipeline import index_images
t = time.perf_counter()
s = index_images([sys.argv[1]], sys.argv[2], IndexConfig(progress=False, batch_size=int(sys.argv[3])))
print(json.dumps({"images": s.added, "seconds": time.perf_counter() - t, "startup": s.startup_seconds}))
"""

SPARK = """
import json, shutil, sys, time
from indexer.config import IndexConfig
from indexer.spark_index import index_images_spark, spark_session
config = IndexConfig(progress=False, batch_size=int(sys.argv[3]), spark_master=sys.argv[4])
t = time.perf_counter()
spark = spark_session(config, {"spark.ui.enabled": "false"})
out = {"session_seconds": time.perf_counter() - t}
for run in ("cold", "warm"):
    shutil.rmtree(sys.argv[2], ignore_errors=True)
    t = time.perf_counter()
    s = index_images_spark([sys.argv[1]], sys.argv[2], config, spark=spark)
    out[run] = {"images": s.added, "seconds": time.perf_counter() - t, "job_seconds": s.spark_seconds,
                "tasks": s.tasks, "task_size": s.task_size, "executor_seconds": s.executor_seconds,
                "model_seconds": s.model_seconds, "worker_peak_rss_mb": s.worker_peak_rss_mb}
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

    shutil.rmtree(index_dir, ignore_errors=True)
    local = child(LOCAL, str(folder), index_dir, batch)
    local_rate = local["images"] / local["seconds"]
    print(f"local engine:           {local_rate:7.1f} img/s whole run ({local['seconds']:.1f} s, "
          f"{local['startup']:.1f} s of it start-up)", flush=True)
    results = {"local": local}
    for master in args.masters.split(","):
        r = child(SPARK, str(folder), index_dir, batch, master)
        results[master] = r
        cold, warm = r["cold"], r["warm"]
        cold_rate, warm_rate = cold["images"] / cold["seconds"], warm["images"] / warm["seconds"]
        print(f"spark {master:9s} cold: {cold_rate:7.1f} img/s ({cold['seconds']:.1f} s, after "
              f"{r['session_seconds']:.1f} s to start the session; {cold['tasks']} tasks of "
              f"{cold['task_size']})  overhead vs local {1 - cold_rate / local_rate:+.0%}", flush=True)
        with_session = cold["images"] / (cold["seconds"] + r["session_seconds"])
        print(f"      {'':9s} cold with the session start: {with_session:7.1f} img/s  overhead vs local "
              f"{1 - with_session / local_rate:+.0%}", flush=True)
        print(f"      {'':9s} warm: {warm_rate:7.1f} img/s ({warm['seconds']:.1f} s; Spark job "
              f"{warm['job_seconds']:.1f} s, tasks busy {warm['executor_seconds']:.1f} s, of which the model "
              f"{warm['model_seconds']:.1f} s)  overhead vs local {1 - warm_rate / local_rate:+.0%}", flush=True)
        print(f"      {'':9s} largest Python worker: {warm['worker_peak_rss_mb']:.0f} MB peak RSS", flush=True)
    shutil.rmtree(index_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
