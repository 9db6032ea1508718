#!/usr/bin/env python
"""What the verifier's local features cost at indexing: `imgsearch index` with and without them, side by side.

Indexes the same images (``--images``, e.g. ``imgsearch sample emoji DIR``)
into fresh folders with ``IndexConfig(local_features=True)`` (the default:
ORB keypoints and a thumbnail computed in the decoding processes from the
picture decoded for the embedding, stored in ``local-features.parquet``) and
``local_features=False``, alternating, ``--rounds`` times each, and prints
the best time of each, the cost per image, the side table's size and the CPU.
A third figure, the features alone on one core (decoded pictures in memory),
says what the difference is made of.

    python scripts/bench_index_features.py --images /tmp/emoji --limit 600
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch.indexer.config import IndexConfig  # noqa: E402
from imgsearch.indexer.folder.features import FEATURES_FILE  # noqa: E402
from imgsearch.indexer.inputs.images import load_rgb  # noqa: E402
from imgsearch.indexer.inputs.local_features import local_features  # noqa: E402
from imgsearch.indexer.run.pipeline import index_images  # noqa: E402


def cpu() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = sorted(set(re.findall(r"avx512[a-z_]*|avx2", text)))
    return f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, flags {' '.join(flags) or 'none'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=600, help="images taken (sorted paths)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backbone", default=None, help="default: the index default")
    args = ap.parse_args()
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.limit]
    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        source = work / "images"
        for i, p in enumerate(files):
            (source / f"{i // 500:03d}").mkdir(parents=True, exist_ok=True)
            shutil.copy(p, source / f"{i // 500:03d}" / f"{i:06d}{p.suffix}")
        print(f"cpu: {cpu()}; {len(files)} images")
        best = {True: float("inf"), False: float("inf")}
        size = 0
        for r in range(args.rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                folder = work / f"idx-{on}-{r}"
                config = IndexConfig(progress=False, local_features=on,
                                     **({"backbone": args.backbone} if args.backbone else {}))
                started = time.perf_counter()
                index_images([source], folder, config)
                best[on] = min(best[on], time.perf_counter() - started)
                if on:
                    size = (folder / FEATURES_FILE).stat().st_size
                shutil.rmtree(folder)
        pictures = [load_rgb(p, min_size=224)[0] for p in files[:200]]
        started = time.perf_counter()
        for img in pictures:
            local_features(img)
        alone = (time.perf_counter() - started) / len(pictures) * 1000
        n = len(files)
        print(f"index with features {best[True]:.1f} s, without {best[False]:.1f} s: "
              f"+{best[True] - best[False]:.1f} s ({(best[True] / best[False] - 1) * 100:+.0f} %, "
              f"{(best[True] - best[False]) / n * 1000:.2f} ms an image); side table {size / 2**20:.1f} MiB "
              f"({size / n / 1024:.1f} KiB an image); features alone {alone:.2f} ms an image on one core")
        print(f"cpu at the end: {cpu()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
