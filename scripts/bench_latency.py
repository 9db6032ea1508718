#!/usr/bin/env python
"""Query-by-image latency: through HTTP versus in process, on one index, in one run.

Starts `imgsearch serve` (waitress, the production server) on a loopback
port in its own process, opens the same index in this process, and sends the
same query images both ways, interleaved (one in process, then the same one
over HTTP) so machine noise hits both alike. Prints p50/p99 of each and the
HTTP overhead, then the model's one-image latency in float32 and int8
(interleaved likewise); ``--precision int8`` builds and queries an int8 index.

    python scripts/bench_latency.py                      # Noto emoji index built under --work
    python scripts/bench_latency.py --index DIR -n 300
    python scripts/bench_latency.py --precision int8
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.search.engine import SearchEngine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_index(work: Path, precision: str = "float32") -> Path:
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.inputs.samples import export_sample
    from imgsearch.indexer.run.pipeline import index_images

    src, index_dir = work / "emoji", work / ("emoji-index" if precision == "float32" else f"emoji-index-{precision}")
    if not src.is_dir():
        export_sample("emoji", src)
    index_images([src], index_dir, IndexConfig(progress=False, precision=precision))
    return index_dir


def start_server(index_dir: Path, port: int, threads: int) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "imgsearch"
    proc = subprocess.Popen([str(exe), "serve", "--index", str(index_dir), "--port", str(port),
                             "--threads", str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = SearchClient(f"http://127.0.0.1:{port}", timeout=2)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            client.health()
            return proc
        except SearchAPIError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("server did not come up within 120 s")


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return (f"p50 {np.percentile(a, 50):7.2f} ms   p99 {np.percentile(a, 99):7.2f} ms   "
            f"mean {a.mean():7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="index folder (default: build the emoji sample index)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench"))
    ap.add_argument("-n", type=int, default=200, help="queries")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=4, help="server threads")
    ap.add_argument("--precision", choices=("float32", "int8"), default="float32",
                    help="of the index built under --work (an --index keeps its own)")
    args = ap.parse_args()

    index_dir = args.index or ensure_index(args.work, args.precision)
    engine = SearchEngine.open(index_dir)
    engine.warm_up()
    paths = [engine.get(int(i)).path for i in engine.ids]
    random.Random(0).shuffle(paths)
    queries = [Path(p).read_bytes() for p in paths[: args.n]]
    print(f"index {index_dir}: {len(engine)} images, {engine.backbone}; {len(queries)} queries, k={args.k}; "
          f"{os.cpu_count()} CPUs")

    port = free_port()
    server = start_server(index_dir, port, args.threads)
    try:
        client = SearchClient(f"http://127.0.0.1:{port}", timeout=30)
        for q in queries[:10]:  # warm both paths (TF traces, connection pool)
            engine.search_image(q, args.k)
            client.search(q, args.k)
        local, http, server_side = [], [], []
        for q in queries:
            t = time.perf_counter()
            expected = engine.search_image(q, args.k)
            local.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            got = client.search(q, args.k)
            http.append((time.perf_counter() - t) * 1000)
            server_side.append(got.took_ms)
            if [h.id for h in got] != [h.id for h in expected]:
                raise SystemExit("HTTP and in-process results differ")
    finally:
        server.terminate()
        server.wait(timeout=30)

    overhead = np.percentile(http, 50) - np.percentile(local, 50)
    print(f"in process (SearchEngine.search_image):   {stats(local)}")
    print(f"over HTTP  (SearchClient.search, waitress): {stats(http)}")
    print(f"  of which server-side handler time:      {stats(server_side)}")
    print(f"HTTP overhead at p50: {overhead:.2f} ms "
          f"({np.percentile(http, 50) / np.percentile(local, 50):.2f}x); target < 10 ms: "
          f"{'met' if overhead < 10 else 'NOT met'}")
    print("results identical both ways for every query")
    model_latency(engine, queries)


def model_latency(engine, queries: list[bytes]) -> None:
    """One image through the float32 and the int8 model, interleaved: decode excluded."""
    from imgsearch.indexer.inputs.calibration import CALIBRATION
    from imgsearch.indexer.inputs.images import decode_image
    from imgsearch.indexer.model.backbones import load_backbone
    from imgsearch.indexer.model.embedder import Embedder

    bb = load_backbone(engine.backbone)
    models = {"float32": Embedder(bb, 1, "tflite"), "int8": Embedder(bb, 1, "tflite", precision="int8",
                                                                         calibration=CALIBRATION)}
    images = [decode_image(q, bb.input_size).array[None] for q in queries]
    times = {name: [] for name in models}
    for image in images[:10]:
        for m in models.values():
            m.embed(image)
    for image in images:
        for name, m in models.items():
            t = time.perf_counter()
            m.embed(image)
            times[name].append((time.perf_counter() - t) * 1000)
    for name, ms in times.items():
        print(f"model only, one image, {name:7s}: {stats(ms)}")
    ratio = np.percentile(times["float32"], 50) / np.percentile(times["int8"], 50)
    print(f"int8 one-image speed-up at p50: {ratio:.2f}x; this index runs "
          f"{engine.info().get('backbone', {}).get('precision', 'float32')}")


if __name__ == "__main__":
    main()
