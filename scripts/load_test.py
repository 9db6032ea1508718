#!/usr/bin/env python
"""Bounded load test of the JSON API: N concurrent clients for T seconds, on loopback only.

Starts `imgsearch serve` (waitress) on a free loopback port in its own
process, over the Noto emoji sample index built under --work (or --index
DIR), then runs --clients threads, each with its own HTTP session, sending
a weighted mix of query-by-image uploads, by-id and by-vector searches back
to back until --duration has passed. Every answer must be 200 with the
expected number of results; anything else counts as failed. Prints
requests, failures, throughput and p50/p90/p99/max latency per kind, and
exits 1 if any request failed.

    python scripts/load_test.py                          # 16 clients, 60 s, emoji index
    python scripts/load_test.py --clients 4 --duration 10 --index DIR
    python scripts/load_test.py --url http://127.0.0.1:8000   # a server already running here

Query images are fetched from the server itself (GET /api/images/<id>),
vectors are random unit vectors (seeded), ids are indexed ids.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests

KINDS = ("image", "id", "vector")


@dataclass
class Material:
    """What the clients send: upload bytes, indexed ids, query vectors."""

    images: list[bytes]
    ids: list[int]
    vectors: list[list[float]]
    count: int


@dataclass
class LoadResult:
    url: str
    clients: int
    duration: float  # seconds from the first request to the last answer
    latencies: dict = field(default_factory=lambda: {k: [] for k in KINDS})  # kind -> [seconds]
    failures: list = field(default_factory=list)  # (kind, what went wrong)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + len(self.failures)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> dict:
        rows = {}
        for kind in (*KINDS, "all"):
            ms = np.asarray([x for k in KINDS for x in self.latencies[k]] if kind == "all"
                            else self.latencies[kind]) * 1000
            failed = sum(1 for k, _ in self.failures if kind in ("all", k))
            rows[kind] = {"requests": int(len(ms)) + failed, "failed": failed,
                          "per_second": round((len(ms) + failed) / self.duration, 1) if self.duration else 0.0}
            if len(ms):
                rows[kind].update({f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)})
                rows[kind]["max_ms"] = round(float(ms.max()), 1)
        return {"url": self.url, "clients": self.clients, "seconds": round(self.duration, 1), "kinds": rows,
                "failures": [f"{k}: {w}" for k, w in self.failures[:20]]}

    def lines(self) -> list[str]:
        s = self.summary()
        out = [f"{'kind':<7} {'requests':>9} {'failed':>7} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} "
               f"{'p99 ms':>8} {'max ms':>8}"]
        for kind, r in s["kinds"].items():
            out.append(f"{kind:<7} {r['requests']:>9} {r['failed']:>7} {r['per_second']:>7.1f} "
                       + " ".join(f"{r.get(c, float('nan')):>8.1f}" for c in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))
        out.append(f"{s['kinds']['all']['requests']} requests in {s['seconds']} s from {self.clients} clients; "
                   f"failed: {self.failed}")
        out += [f"  failed: {f}" for f in s["failures"]]
        return out


def fetch_material(url: str, seed: int = 0, n_images: int = 32, n_vectors: int = 64) -> Material:
    """Ask the server what it holds: ids (from a by-vector search), query images, the dimension."""
    info = requests.get(f"{url}/api/info", timeout=30).json()
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n_vectors, info["dim"])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    r = requests.post(f"{url}/api/search", json={"vector": vectors[0].tolist(), "k": 1000}, timeout=60)
    r.raise_for_status()
    ids = [h["id"] for h in r.json()["results"]]
    if not ids:
        raise SystemExit(f"{url} serves an empty index: nothing to load-test")
    images = []
    for row_id in ids[:: max(1, len(ids) // n_images)][:n_images]:
        r = requests.get(f"{url}/api/images/{row_id}", params={"size": 256}, timeout=30)
        if r.status_code == 200:
            images.append(r.content)
    if not images:
        raise SystemExit(f"{url} cannot send any indexed image back (GET /api/images/<id>): are the files there?")
    return Material(images, ids, vectors.tolist(), info["count"])


def run_load(url: str, clients: int = 16, duration: float = 60.0, *, mix: dict | None = None, k: int = 10,
             material: Material | None = None, seed: int = 0, timeout: float = 60.0) -> LoadResult:
    """``clients`` threads query ``url`` back to back for ``duration`` seconds; every answer is checked."""
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"load tests run against this machine only (loopback), not {host}")
    mix = mix or {"image": 1, "id": 1, "vector": 1}
    material = material or fetch_material(url, seed)
    kinds, weights = zip(*[(kind, w) for kind, w in mix.items() if w > 0])
    result = LoadResult(url, clients, 0.0)
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        session = requests.Session()
        latencies = {kind: [] for kind in KINDS}
        failures = []
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            want = min(k, material.count)
            started = time.perf_counter()
            try:
                if kind == "image":
                    r = session.post(f"{url}/api/search", files={"image": ("q.jpg", rng.choice(material.images))},
                                     data={"k": k}, timeout=timeout)
                elif kind == "id":
                    r = session.post(f"{url}/api/search", json={"id": rng.choice(material.ids), "k": k},
                                     timeout=timeout)
                    want = min(k, material.count - 1)
                else:
                    r = session.post(f"{url}/api/search", json={"vector": rng.choice(material.vectors), "k": k},
                                     timeout=timeout)
                elapsed = time.perf_counter() - started
                if r.status_code != 200:
                    failures.append((kind, f"HTTP {r.status_code}: {r.text[:200]}"))
                elif len(r.json().get("results", ())) != want:
                    failures.append((kind, f"{len(r.json().get('results', ()))} results, expected {want}"))
                else:
                    latencies[kind].append(elapsed)
            except (requests.RequestException, ValueError) as exc:
                failures.append((kind, f"{type(exc).__name__}: {exc}"))
        with lock:
            for kind in KINDS:
                result.latencies[kind] += latencies[kind]
            result.failures += failures

    threads = [threading.Thread(target=client, args=(n,), name=f"load-client-{n}") for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.duration = time.monotonic() - started
    return result


# ---------------------------------------------------------------- a server of our own


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "imgsearch"
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a pipe nobody reads would block the server
    proc = subprocess.Popen([str(exe), "serve", "--index", str(index_dir), "--host", "127.0.0.1",
                             "--port", str(port), "--threads", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited with {proc.returncode}: {log.read()[-2000:]}")
        try:
            if requests.get(f"{url}/api/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("the server did not come up within 180 s")


def parse_mix(text: str) -> dict:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind not in KINDS or not weight.replace(".", "", 1).isdigit():
            raise argparse.ArgumentTypeError(f"--mix takes kind=weight pairs of {', '.join(KINDS)}, got {part!r}")
        mix[kind] = float(weight)
    return mix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--index", type=Path, help="index folder to serve (default: the emoji sample index)")
    where.add_argument("--url", help="a server already running on this machine")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench"), help="where the sample index goes")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds")
    ap.add_argument("--threads", type=int, default=8, help="server threads (imgsearch serve --threads)")
    ap.add_argument("--mix", type=parse_mix, default={"image": 1, "id": 1, "vector": 1},
                    help="request mix, e.g. image=1,id=2,vector=2")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    proc = None
    url = args.url
    if url is None:
        index_dir = args.index
        if index_dir is None:
            from imgsearch.indexer.run.samples import sample_index

            print(f"building (or reusing) the emoji sample index under {args.work} ...", flush=True)
            index_dir = sample_index("emoji", args.work)
        proc, url = start_server(index_dir, args.threads)
    try:
        material = fetch_material(url)
        print(f"load test: {args.clients} clients for {args.duration:g} s against {url} "
              f"({material.count} images; server threads {args.threads if proc else '?'}; "
              f"mix {', '.join(f'{k}={v:g}' for k, v in args.mix.items())}; k={args.k})", flush=True)
        result = run_load(url, args.clients, args.duration, mix=args.mix, k=args.k, material=material)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for line in result.lines():
        print(line)
    if args.json:
        args.json.write_text(json.dumps(result.summary(), indent=2))
    sys.exit(1 if result.failed else 0)


if __name__ == "__main__":
    main()
