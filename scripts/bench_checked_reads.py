#!/usr/bin/env python
"""What checking an indexed file against its stored sha256 costs a thumbnail, side by side in one run.

Every re-read of an indexed file reads it whole and hashes it (search/thumbnails.py ``read_checked``); this
times a 256 px thumbnail of seeded photos-like JPEGs of a few sizes decoded from the path as before (no check)
and through ``read_checked`` (read + size + sha256), the median of ``--repeat`` runs each.

    python scripts/bench_checked_reads.py --work /tmp/bench-checked
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.indexer.inputs.images import load_rgb
from imgsearch.search.thumbnails import read_checked


def _thumbnail(source, size: int = 256) -> bytes:
    img, _, _ = load_rgb(source, min_size=size, max_pixels=200_000_000)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _median_ms(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-checked"))
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print(f"{'image':>14} {'file MB':>8} {'unchecked ms':>13} {'checked ms':>11} {'sha256 ms':>10} {'ratio':>6}")
    for w, h in [(1024, 768), (4000, 3000), (8000, 6000)]:
        small = rng.integers(0, 256, (h // 16, w // 16, 3), np.uint8)  # smooth-ish: a photo's compression
        path = args.work / f"photo-{w}x{h}.jpg"
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(path, "JPEG", quality=90)
        data = path.read_bytes()
        record = (hashlib.sha256(data).hexdigest(), len(data), int(path.stat().st_mtime))
        plain = _median_ms(lambda: _thumbnail(str(path)), args.repeat)
        checked = _median_ms(lambda: _thumbnail(read_checked(str(path), *record, name="image 0")), args.repeat)
        hashing = _median_ms(lambda: hashlib.sha256(path.read_bytes()).hexdigest(), args.repeat)
        print(f"{w:>6} x {h:<5} {len(data) / 1e6:>8.2f} {plain:>13.1f} {checked:>11.1f} {hashing:>10.1f} "
              f"{checked / plain:>6.2f}")


if __name__ == "__main__":
    main()
