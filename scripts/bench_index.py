#!/usr/bin/env python
"""Indexing throughput, measured side by side in one run.

Makes (once, under --work) a folder of JPEG photos of the sizes a photo
folder holds, from scikit-image's bundled photographs by random crops, flips
and resizes: most between 640x480 and 1920x1080, about 5 % up to 4000x3000.
Then prints:

  (a) model only, fastest runtime (TFLite float32, XNNPACK), pre-made tensors
  (a8) model only, the calibrated full-integer int8 TFLite model, the same tensors
  (d) model only, compiled tf.function, the same tensors
  (e) decode + resize on one core alone (Pillow, draft for JPEG, bilinear), and with a bicubic resize
  (b) end to end: `imgsearch index` on the folder (decode processes, model, shards, FAISS)
  (b8) the same with --precision int8
  (c) naive baseline as tutorials do it: keras.utils.load_img + model.predict, one image at a time

and the ceiling for (b) on a CPU where decoding and inference share the n
cores, L = 1 / (1/a + 1/(n*e)) (L8 with a8), with the targets a >= 2.5 d, b >= 0.85 L,
b >= 5 c, a8 >= 2.5 a, b8 >= 1.7 b.  The CPU's flags that int8 speed depends on
(VNNI) are printed with the ratio.  Peak memory of the indexing process is measured for N/2 and N
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


def cpu_flags() -> str:
    """The CPU's instruction-set flags that decide int8 speed (Linux; else 'unknown')."""
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted)


def run_index(folder: Path, index_dir: Path, backbone: str, batch: int, precision: str = "float32") -> dict:
    """Indexing in a child process: wall-clock images/s, start-up, and the child's peak RSS.

    The child is spawned with ``-c``, so decode workers need no main guard.
    """
    code = ("import sys, time, dataclasses\n"
            "from imgsearch.indexer.config import IndexConfig\nfrom imgsearch.indexer.run.pipeline import index_images\n"
            "t = time.perf_counter()\n"
            f"s = index_images([{str(folder)!r}], {str(index_dir)!r}, dataclasses.replace(IndexConfig(), "
            f"backbone={backbone!r}, batch_size={batch}, precision={precision!r}, progress=False))\n"
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

    from imgsearch.indexer.inputs.calibration import CALIBRATION
    from imgsearch.indexer.inputs.images import decode_image
    from imgsearch.indexer.model.backbones import load_backbone
    from imgsearch.indexer.model.embedder import Embedder

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
    quantised = Embedder(bb, args.batch_size, "tflite", precision="int8", calibration=CALIBRATION)
    a8 = rate(lambda: quantised.embed(tensors), len(tensors))
    from imgsearch.indexer.model.runtime import default_precision

    chosen = default_precision(bb, "tflite", calibration=CALIBRATION)[1]  # the self-test's figures and choice
    d = rate(lambda: graph.embed(tensors), len(tensors))
    sample = photos[:200]
    e = rate(lambda: [decode_image(p, s, resample="bilinear") for p in sample], len(sample), repeat=2)  # new indexes
    e_bicubic = rate(lambda: [decode_image(p, s, resample="bicubic") for p in sample], len(sample), repeat=2)
    L = 1 / (1 / a + 1 / (cores * e))
    L8 = 1 / (1 / a8 + 1 / (cores * e))

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
    index_dir = args.work / f"index-{args.images}-int8"
    shutil.rmtree(index_dir, ignore_errors=True)
    int8 = run_index(args.work / f"photos-{args.images}", index_dir, args.backbone, args.batch_size, "int8")
    b8 = int8["rate"]

    print(f"(a) model only, TFLite:           {a:8.1f} img/s")
    print(f"(d) model only, tf.function:      {d:8.1f} img/s   a/d = {a / d:.2f}  (target >= 2.5)")
    print(f"(a8) model only, TFLite int8:     {a8:8.1f} img/s   a8/a = {a8 / a:.2f}  (target >= 2.5; CPU flags: "
          f"{cpu_flags()})")
    print(f"    a new index on this CPU: {chosen}  (float32 {a:.1f} img/s, int8 {a8:.1f} img/s here)")
    print(f"(e) decode+resize, one core:      {e:8.1f} img/s   (bilinear, as new indexes; bicubic, as earlier "
          f"ones: {e_bicubic:.1f} img/s, bilinear {e / e_bicubic:.2f}x)")
    print(f"    ceiling L = 1/(1/a + 1/({cores}e)): {L:8.1f} img/s;  L8 (with a8): {L8:.1f} img/s")
    steady = results[args.images]["steady_rate"]
    print(f"(b) end to end, imgsearch index:  {b:8.1f} img/s   b/L = {b / L:.2f}  (target >= 0.85), whole run")
    print(f"    after {results[args.images]['startup_seconds']:.1f} s start-up:       {steady:8.1f} img/s"
          f"   = {steady / L:.2f} L  (what a long run approaches)")
    print(f"(b8) end to end, --precision int8: {b8:7.1f} img/s   b8/b = {b8 / b:.2f}  (target >= 1.7), "
          f"b8/L8 = {b8 / L8:.2f}  (target >= 0.85), peak RSS {int8['peak_rss_mb']:.0f} MB, whole run")
    steady8 = int8["steady_rate"]
    print(f"    after {int8['startup_seconds']:.1f} s start-up:       {steady8:8.1f} img/s   = {steady8 / L8:.2f} L8, "
          f"{steady8 / steady:.2f} x b's")
    print(f"(c) naive load_img + predict:     {c:8.1f} img/s   b/c = {b / c:.1f}  (target >= 5)")
    for n, r in results.items():
        print(f"    indexing {n:5d} images: {r['rate']:.1f} img/s whole run, {r['steady_rate']:.1f} after "
              f"start-up, peak RSS {r['peak_rss_mb']:.0f} MB")
    growth = results[args.images]["peak_rss_mb"] / results[args.images // 2]["peak_rss_mb"]
    print(f"    peak memory ratio {args.images} vs {args.images // 2} images: {growth:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"a": a, "a8": a8, "d": d, "e": e, "L": L, "L8": L8, "b": b,
                                         "b8": b8, "c": c, "e_bicubic": e_bicubic, "cores": cores, "cpu_flags": cpu_flags(),
                                         "new_index_precision": chosen,
                                         "runs": results, "int8_run": int8}, indent=2))


if __name__ == "__main__":
    main()
