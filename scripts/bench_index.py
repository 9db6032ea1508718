#!/usr/bin/env python
"""Indexing throughput, measured side by side in one run.

Makes (once, under --work) a folder of JPEG photos of the sizes a photo
folder holds, from scikit-image's bundled photographs by random crops, flips
and resizes: most between 640x480 and 1920x1080, about 5 % up to 4000x3000.
Then prints:

  (a) model only, fastest runtime (TFLite float32, XNNPACK), pre-made tensors
  (d) model only, compiled tf.function, the same tensors
  (e) decode + resize on one core alone (Pillow, draft for JPEG)
  (b) end to end: `imgsearch index` on the folder (decode processes, model, shards, FAISS)
  (c) naive baseline as tutorials do it: keras.utils.load_img + model.predict, one image at a time

and the ceiling for (b) on a CPU where decoding and inference share the n
cores, L = 1 / (1/a + 1/(n*e)), with the targets a >= 2.5 d, b >= 0.85 L,
b >= 5 c.  Peak memory of the indexing process is measured for N/2 and N
images: it must not grow with N.

    python scripts/bench_index.py --work /tmp/imgsearch-bench --images 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n JPEGs from skimage photos: crop, flip, resize to photo-folder sizes."""
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) >= n:
        return existing[:n]
    sources = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
               for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                            "immunohistochemistry", "retina", "colorwheel")]
    rng = random.Random(seed)
    common = [(640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960), (1600, 1200), (1920, 1080)]
    large = [(2560, 1920), (3264, 2448), (4000, 3000)]
    for i in range(len(existing), n):
        img = rng.choice(sources)
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        size = rng.choice(large) if rng.random() < 0.05 else rng.choice(common)
        if rng.random() < 0.3:
            size = size[::-1]  # portrait
        out.resize(size, Image.BICUBIC).save(folder / f"photo-{i:05d}.jpg", quality=rng.randint(80, 95))
    return sorted(folder.glob("*.jpg"))[:n]


def rate(fn, items: int, repeat: int = 3) -> float:
    """Best of ``repeat`` timings, in items per second."""
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return items / best


def run_index(folder: Path, index_dir: Path, backbone: str, batch: int) -> dict:
    """Indexing in a child process: wall-clock images/s, start-up, and the child's peak RSS.

    The child is spawned with ``-c``, so decode workers need no main guard.
    """
    code = ("import sys, time, dataclasses\n"
            "from indexer.config import IndexConfig\nfrom indexer.run.pipeline import index_images\n"
            "t = time.perf_counter()\n"
            f"s = index_images([{str(folder)!r}], {str(index_dir)!r}, dataclasses.replace(IndexConfig(), "
            f"backbone={backbone!r}, batch_size={batch}, progress=False))\n"
            "dt = time.perf_counter() - t\n"
            # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would show this parent's peak
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
            "print(s.added, dt, s.startup_seconds, hwm)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added, seconds, startup, rss_kb = out.stdout.split()[-4:]
    added, seconds, startup = int(added), float(seconds), float(startup)
    return {"images": added, "seconds": seconds, "rate": added / seconds, "startup_seconds": startup,
            "steady_rate": added / (seconds - startup), "peak_rss_mb": int(rss_kb) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench"))
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--naive", type=int, default=100, help="images for the one-at-a-time baseline")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from indexer.inputs.images import decode_image
    from indexer.model.backbones import load_backbone
    from indexer.model.embedder import Embedder

    cores = os.cpu_count() or 1
    photos = make_photos(args.work / "photos", args.images)
    sizes = [Image.open(p).size for p in photos]
    big = sum(w * h > 1920 * 1080 for w, h in sizes)
    print(f"{len(photos)} JPEG photos, {big} ({100 * big / len(photos):.1f} %) larger than 1920x1080, "
          f"largest {max(sizes, key=lambda s: s[0] * s[1])}; {cores} cores; backbone {args.backbone}")

    bb = load_backbone(args.backbone)
    s = bb.input_size
    tensors = np.random.default_rng(0).integers(0, 256, (args.batch_size * 4, s, s, 3), dtype=np.uint8)
    fast, graph = Embedder(bb, args.batch_size, "tflite"), Embedder(bb, args.batch_size, "tf")
    a = rate(lambda: fast.embed(tensors), len(tensors))
    d = rate(lambda: graph.embed(tensors), len(tensors))
    sample = photos[:200]
    e = rate(lambda: [decode_image(p, s) for p in sample], len(sample), repeat=2)
    L = 1 / (1 / a + 1 / (cores * e))

    import keras

    model = keras.Model(bb.features.inputs, bb.features.outputs)
    naive_files = photos[: args.naive]

    def naive():
        for p in naive_files:
            x = keras.utils.img_to_array(keras.utils.load_img(p, target_size=(s, s)))[None]  # (1, S, S, 3)
            model.predict(bb.preprocess(x), verbose=0)

    c = rate(naive, len(naive_files), repeat=1)

    results = {}
    for n in (args.images // 2, args.images):
        sub = args.work / f"photos-{n}"
        if not sub.is_dir():
            sub.mkdir()
            for p in photos[:n]:
                os.link(p, sub / p.name)
        index_dir = args.work / f"index-{n}"
        shutil.rmtree(index_dir, ignore_errors=True)  # embed everything again
        results[n] = run_index(sub, index_dir, args.backbone, args.batch_size)
    b = results[args.images]["rate"]

    print(f"(a) model only, TFLite:           {a:8.1f} img/s")
    print(f"(d) model only, tf.function:      {d:8.1f} img/s   a/d = {a / d:.2f}  (target >= 2.5)")
    print(f"(e) decode+resize, one core:      {e:8.1f} img/s")
    print(f"    ceiling L = 1/(1/a + 1/({cores}e)): {L:8.1f} img/s")
    steady = results[args.images]["steady_rate"]
    print(f"(b) end to end, imgsearch index:  {b:8.1f} img/s   b/L = {b / L:.2f}  (target >= 0.85), whole run")
    print(f"    after {results[args.images]['startup_seconds']:.1f} s start-up:       {steady:8.1f} img/s"
          f"   = {steady / L:.2f} L  (what a long run approaches)")
    print(f"(c) naive load_img + predict:     {c:8.1f} img/s   b/c = {b / c:.1f}  (target >= 5)")
    for n, r in results.items():
        print(f"    indexing {n:5d} images: {r['rate']:.1f} img/s whole run, {r['steady_rate']:.1f} after "
              f"start-up, peak RSS {r['peak_rss_mb']:.0f} MB")
    growth = results[args.images]["peak_rss_mb"] / results[args.images // 2]["peak_rss_mb"]
    print(f"    peak memory ratio {args.images} vs {args.images // 2} images: {growth:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"a": a, "d": d, "e": e, "L": L, "b": b, "c": c, "cores": cores,
                                         "runs": results}, indent=2))


if __name__ == "__main__":
    main()
