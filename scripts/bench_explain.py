#!/usr/bin/env python
"""What explaining a match costs: forward passes counted and POST /api/explain's latency through a real server.

Starts `imgsearch serve` (waitress) on a loopback port in its own process over an index of scikit-image's
photos and 60 Noto emoji (built under --work), then, for each of -n rounds, uploads a query image never
seen before (one pixel changed: a new image to the server's map cache), searches by it, and explains its
top results; and explains pairs by id.  Each answer says how many forward passes of the explaining model it
took (``forward_passes``: 2 = query and result, 1 = the query's map was cached, 0 = both were); latencies
are grouped by it, beside a search by the same upload (one forward pass), interleaved so noise hits all alike.

    python scripts/bench_explain.py
    python scripts/bench_explain.py --precision int8 -n 100
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_index(work: Path, precision: str) -> Path:
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.inputs.samples import export_sample
    from imgsearch.indexer.run.pipeline import index_images

    index_dir = work / f"index-{precision}"
    if not (index_dir / "manifest.json").is_file():
        export_sample("photos", work / "images" / "photos")
        export_sample("emoji", work / "images" / "emoji", limit=60)
        index_images([work / "images"], index_dir, IndexConfig(progress=False, precision=precision))
    return index_dir


def unique_jpeg(path: Path, n: int) -> bytes:
    """The image with one pixel changed: bytes the server has never seen."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    im.putpixel((n % im.width, (n // im.width) % im.height), (n % 256, 0, 0))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def p50(values) -> str:
    return f"{np.median(values):7.1f} ms" if values else "    n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("build/bench-explain"))
    parser.add_argument("--precision", choices=["float32", "int8"], default="float32")
    parser.add_argument("-n", type=int, default=40, help="rounds (query images)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    index_dir = ensure_index(args.work, args.precision)
    photos = sorted((args.work / "images" / "photos").glob("*.jpg"))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-c", "from imgsearch.web.cli import main; main()", "serve", "--index",
                               str(index_dir), "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # the server loads the model before it listens: up to a minute
            try:
                requests.get(f"{base}/api/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        session = requests.Session()
        search_ms, explain_ms = [], {0: [], 1: [], 2: []}
        # warm both models once (the explaining model loads on the first explain)
        first = session.post(f"{base}/api/search", files={"image": ("q.jpg", unique_jpeg(photos[0], 0))},
                             data={"k": "3"}, timeout=60).json()["results"]
        session.post(f"{base}/api/explain", json={"query": {"id": first[0]["id"]}, "id": first[1]["id"]}, timeout=60)
        for n in range(1, args.n + 1):
            data = unique_jpeg(photos[n % len(photos)], n)
            started = time.perf_counter()
            r = session.post(f"{base}/api/search", files={"image": ("q.jpg", data)}, data={"k": "4"}, timeout=60)
            search_ms.append((time.perf_counter() - started) * 1000)
            hits = r.json()["results"]
            for hit in hits[1:4]:
                started = time.perf_counter()
                body = session.post(f"{base}/api/explain", files={"image": ("q.jpg", data)},
                                    data={"id": str(hit["id"])}, timeout=60).json()
                explain_ms[body["forward_passes"]].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()  # by id: the query's image read from its file
            body = session.post(f"{base}/api/explain", json={"query": {"id": hits[0]["id"]}, "id": hits[1]["id"]},
                                timeout=60).json()
            explain_ms[body["forward_passes"]].append((time.perf_counter() - started) * 1000)
        info = session.get(f"{base}/api/info", timeout=10).json()
        print(f"{info['count']} images, {info['backbone']['name']} {args.precision}, {args.n} rounds, "
              f"{os.cpu_count()} cores")
        print(f"  search by upload (1 forward pass)                     p50 {p50(search_ms)}  ({len(search_ms)} requests)")
        for passes, label in ((2, "query and result run"), (1, "one of them cached"), (0, "both cached")):
            print(f"  explain, {passes} forward pass{'es' if passes != 1 else '  '} ({label:20s}) p50 {p50(explain_ms[passes])}  "
                  f"({len(explain_ms[passes])} requests)")
        everything = sum(explain_ms.values(), [])
        print(f"  explain, all requests                                 p50 {p50(everything)}  ({len(everything)} requests)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
