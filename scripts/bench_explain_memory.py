#!/usr/bin/env python
"""What concurrent explanations of a huge upload cost in memory: peak RSS of a real server, side by side.

A 49 MP PNG is decoded whole to explain it (PNG has no reduced-scale decoding: ~150 MB of RGB pixels, more
while converted and resized).  POST /api/explain runs at most EXPLAIN_DECODES explanations at once (web/app.py,
default 2), the others wait.  This starts a server (waitress, 8 threads, in a child process per setting) over a
3-image efficientnet-lite0 index, warms it up with one small explanation, then sends ``--concurrent``
explanations at once, each of a different 49 MP PNG (one pixel apart, so no cached map serves another), and
samples the server process's RSS every 20 ms: before, peak, after.  Settings: EXPLAIN_DECODES equal to the
number of requests (what no bound did) and the default 2.

    python scripts/bench_explain_memory.py --work /tmp/bench-explain-memory

Measured (2 shared cores, 8 requests, peak RSS from 0.26 GB before): the release before (no bound, Pillow's
16 MB blocks) 2.7-2.9 GB; EXPLAIN_DECODES=2 alone still 2.5 GB, and kept after (each thread's malloc arena
held its peak); with the pixels in one mapped block (indexer/inputs/images.py) 1.0 GB, back to 0.29 GB after;
EXPLAIN_DECODES=8 with that block 3.0 GB at peak, 0.28 GB after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 7000  # 7000 x 7000 = 49 MP


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ensure_inputs(work: Path, concurrent: int) -> tuple[Path, list[Path]]:
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images

    work.mkdir(parents=True, exist_ok=True)
    images, index = work / "images", work / "idx"
    if not index.exists():
        images.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (240, 320, 3), np.uint8)).save(images / f"i{i}.jpg")
        index_images([images], index, IndexConfig(progress=False, backbone="efficientnet-lite0",
                                                  precision="float32"))
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    base = np.stack([(x * 255 // SIDE), (y * 255 // SIDE), ((x + y) * 255 // (2 * SIDE))], -1).astype(np.uint8)
    pngs = []
    for n in range(concurrent):
        path = work / f"huge-{n}.png"
        if not path.exists():
            base[0, 0] = (n, 0, 0)  # one pixel apart: a map cached for one serves no other
            Image.fromarray(base).save(path, compress_level=1)
        pngs.append(path)
    return index, pngs


def serve_and_measure(index: Path, pngs: list[Path], decodes: int) -> dict:
    """Runs in a child process: the server in threads here, RSS of this process sampled."""
    import requests

    from imgsearch.web import create_app
    from imgsearch.web.server import make_server

    app = create_app({"INDEX_DIR": str(index), "EXPLAIN_DECODES": decodes, "RELOAD_INTERVAL": None,
                      "MAX_CONTENT_LENGTH": 200 * 1024 * 1024, "SERVER_THREADS": len(pngs)})
    server = make_server(app, host="127.0.0.1", port=0)
    url = f"http://127.0.0.1:{server.effective_port}"
    threading.Thread(target=server.run, daemon=True).start()
    small = Image.new("RGB", (64, 64), "gray")
    import io

    buf = io.BytesIO()
    small.save(buf, "PNG")
    warm = requests.post(f"{url}/api/explain", files={"image": ("s.png", buf.getvalue())}, data={"id": "0"},
                         timeout=600)
    assert warm.status_code == 200, warm.text
    datas = [p.read_bytes() for p in pngs]
    time.sleep(0.5)
    before = rss_mb()
    peak, stop = [before], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses = []

    def ask(data):
        r = requests.post(f"{url}/api/explain", files={"image": ("huge.png", data)}, data={"id": "1"},
                          timeout=600)
        statuses.append(r.status_code)

    started = time.perf_counter()
    clients = [threading.Thread(target=ask, args=(d,)) for d in datas]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {"decodes": decodes, "requests": len(datas), "statuses": sorted(statuses), "seconds": round(seconds, 1),
            "rss_before_mb": round(before), "rss_peak_mb": round(max(peak)), "rss_after_mb": round(rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-explain-memory"))
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # EXPLAIN_DECODES, in a child
    args = parser.parse_args()
    index, pngs = ensure_inputs(args.work, args.concurrent)
    if args.child is not None:
        print(json.dumps(serve_and_measure(index, pngs, args.child)))
        return
    print(f"{args.concurrent} concurrent POST /api/explain of different {SIDE}x{SIDE} PNGs "
          f"({pngs[0].stat().st_size / 1e6:.1f} MB each)")
    print(f"{'EXPLAIN_DECODES':>15} {'statuses':>24} {'seconds':>8} {'RSS before':>11} {'peak':>7} {'after':>7}")
    for decodes in (args.concurrent, 2):
        out = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--concurrent",
                              str(args.concurrent), "--child", str(decodes)],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['decodes']:>15} {str(r['statuses']):>24} {r['seconds']:>8} {r['rss_before_mb']:>8} MB "
              f"{r['rss_peak_mb']:>4} MB {r['rss_after_mb']:>4} MB")


if __name__ == "__main__":
    main()
