#!/usr/bin/env python
"""Near-duplicate detection on real images: imgsearch against imagededup's hashing, in one run.

The benchmark (made here, seeded): 76 tiles of scikit-image's photographs,
each with 8 edits (80 % and 50 % crops, 10 degree rotation, JPEG quality 20,
half size, colour, a sticker over a fifth, a border; indexer/inputs/near_duplicates.py),
plus 248 look-alikes that must not be grouped (emoji of one subcategory, MNIST
digits of one class; indexer/inputs/samples.lookalikes); tiles of one
photograph share no pixels and are look-alikes of each other.  Truth: an
original and its edits are one group, 76 x 36 = 2,736 pairs.

For each method, the pairs inside the groups it reports are scored against
the truth: pair precision and recall, and the time.

  imgsearch  `imgsearch duplicates` at each threshold (cosine, keeper guard), on the
             default index (int8 lite0), with --no-keypoints (also the pairs scoring >= the
             threshold, ungrouped) and with keypoints (pairs down to 0.55 confirmed by matching
             ORB keypoints, search/duplicates/keypoints.py; the first row includes finding them)
  imagededup PHash, DHash, WHash, AHash at its default Hamming distance 10, run in
             --imagededup-python (a venv with `pip install imagededup`); its CNN
             method needs torchvision's ImageNet download, which this network refuses

    python scripts/bench_duplicates.py --work /tmp/imgsearch-dups --imagededup-python /tmp/dedup-venv/bin/python
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from imgsearch.search.duplicates.groups import DEFAULT_THRESHOLD

THRESHOLDS = (0.98, 0.97, 0.96, 0.94, 0.92, 0.90, 0.88, 0.86, 0.84, 0.82, 0.80, 0.75, 0.70)
KEYPOINT_THRESHOLDS = (0.98, 0.95, 0.92, 0.90, 0.85, 0.80)  # with keypoints (slower: the files are read)

# imagededup's package imports torchvision (for its CNN method) even when only hashing is used; a torchvision
# built for this machine's CPU-only torch is not on PyPI, so the driver stands in empty modules for it.  The
# hashing code that runs is imagededup's own.
IMAGEDEDUP_DRIVER = r"""
import json, sys, time, types
try:
    import torchvision  # noqa: F401
except Exception:
    class Stub(types.ModuleType):
        __path__ = []  # a package, so submodules import
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Stub(self.__name__ + "." + name)
        def __call__(self, *args, **kwargs):
            return Stub("call")
    for name in ("torchvision", "torchvision.models", "torchvision.models.vision_transformer",
                 "torchvision.transforms"):
        sys.modules[name] = Stub(name)
from imagededup.methods import AHash, DHash, PHash, WHash
folder, out = sys.argv[1], {}
for cls in (PHash, DHash, WHash, AHash):
    t = time.perf_counter()
    method = cls(verbose=False)
    found = method.find_duplicates(image_dir=folder, recursive=True, max_distance_threshold=10)
    out[cls.__name__] = {"seconds": time.perf_counter() - t, "duplicates": found}
print(json.dumps(out))
"""


def export(folder: Path) -> dict[str, int]:
    """The benchmark's files under ``folder``; returns relative path -> truth group (look-alikes: their own)."""
    from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set
    from imgsearch.indexer.inputs.samples import lookalikes

    truth = {}
    for item in near_duplicate_set() + lookalikes():
        sub = f"near/{item.group:03d}" if item.group < 10_000 else "alike"
        name = item.edit if item.group < 10_000 else item.name
        rel = f"{sub}/{name}.{'jpg' if item.encoded is not None else 'png'}"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if item.encoded is not None:
            path.write_bytes(item.encoded)
        else:
            item.image.save(path, compress_level=1)
        truth[rel] = item.group
    return truth


def true_pairs(truth: dict[str, int]) -> set[frozenset]:
    by_group: dict[int, list[str]] = {}
    for rel, group in truth.items():
        by_group.setdefault(group, []).append(rel)
    return {frozenset(p) for members in by_group.values() for p in itertools.combinations(members, 2)}


def score(found: set[frozenset], truth: set[frozenset]) -> dict:
    hits = len(found & truth)
    return {"pairs": len(found), "precision": hits / len(found) if found else 1.0, "recall": hits / len(truth)}


def group_pairs(groups: list[list[str]]) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(set(g)), 2)}


def run_imgsearch(folder: Path, index_dir: Path, truth: set[frozenset]) -> list[dict]:
    import numpy as np

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.engine import SearchEngine

    t = time.perf_counter()
    if not index_dir.is_dir():
        index_images([folder], index_dir, IndexConfig(progress=False))
    index_seconds = time.perf_counter() - t
    engine = SearchEngine.open(index_dir)
    rel = {i: str(Path(engine.get(i).path).relative_to(folder)) for i in engine.ids}
    ids = np.array(sorted(rel))
    vectors = np.stack([engine.vector(int(i)) for i in ids])  # (n, D) stored embeddings (the index is not whitened)
    scores = vectors @ vectors.T  # (n, n): 934 images, small enough to score every pair for the ungrouped line
    rows = []
    for threshold in THRESHOLDS:
        t = time.perf_counter()
        report = engine.duplicates(threshold=threshold, keypoints=False)
        seconds = time.perf_counter() - t
        grouped = score(group_pairs([[rel[i] for i in g.ids] for g in report.groups]), truth)
        a, b = np.nonzero(np.triu(scores >= threshold, 1))
        raw = score({frozenset((rel[int(ids[x])], rel[int(ids[y])])) for x, y in zip(a, b)}, truth)
        rows.append({"method": "imgsearch, cosine only", "threshold": threshold, "seconds": seconds,
                     "index_seconds": index_seconds, **grouped,
                     "ungrouped": raw})
    for threshold in KEYPOINT_THRESHOLDS:  # keypoints are found once (the engine keeps them) and reused
        t = time.perf_counter()
        report = engine.duplicates(threshold=threshold, keypoints=True)
        grouped = score(group_pairs([[rel[i] for i in g.ids] for g in report.groups]), truth)
        rows.append({"method": "imgsearch + keypoints", "threshold": threshold, "seconds": time.perf_counter() - t,
                     "confirmed": report.confirmed, "refuted": report.refuted, **grouped})
        if threshold == DEFAULT_THRESHOLD:
            rows[-1]["per_edit"] = per_edit(report, rel)
    return rows


def per_edit(report, rel: dict) -> dict:
    """Share of each edit grouped with its original (by the report's groups), and of each photo's tiles."""
    together = {frozenset(p) for g in report.groups for p in itertools.combinations([rel[i] for i in g.ids], 2)}
    out: dict[str, list] = {}
    for path in rel.values():
        if path.startswith("near/") and not path.rsplit("/", 1)[1].startswith("original"):
            original = path.rsplit("/", 1)[0] + "/original.png"
            out.setdefault(Path(path).stem, []).append(frozenset((path, original)) in together)
    return {edit: round(sum(v) / len(v), 3) for edit, v in sorted(out.items())}


def run_imagededup(python: str, folder: Path, truth: set[frozenset]) -> list[dict]:
    out = subprocess.run([python, "-c", IMAGEDEDUP_DRIVER, str(folder)], capture_output=True, text=True)
    if out.returncode:
        print(f"imagededup did not run: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
        return []
    rows = []
    for name, result in json.loads(out.stdout.splitlines()[-1]).items():
        found = {frozenset((a, b)) for a, dups in result["duplicates"].items() for b in dups if a != b}
        rows.append({"method": f"imagededup {name}", "threshold": "distance <= 10", "seconds": result["seconds"],
                     **score(found, truth)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-dups"))
    ap.add_argument("--imagededup-python", default=None, help="a Python with imagededup installed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    folder = args.work / "images"
    if folder.is_dir() and not (args.work / ".complete").is_file():
        shutil.rmtree(folder)
    truth_map = export(folder) if not (args.work / ".complete").is_file() else \
        json.loads((args.work / "truth.json").read_text())
    (args.work / "truth.json").write_text(json.dumps(truth_map))
    (args.work / ".complete").touch()
    truth = true_pairs(truth_map)
    print(f"{len(truth_map)} images, {len(truth)} true pairs; {sys.executable}")

    rows = run_imgsearch(folder, args.work / "index", truth)
    if args.imagededup_python:
        rows += run_imagededup(args.imagededup_python, folder, truth)

    print("\n| method | threshold | pairs found | pair precision | pair recall | seconds |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['threshold']} | {r['pairs']} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['seconds']:.2f} |")
    for r in rows:
        if "per_edit" in r:
            print(f"\nwith keypoints at the default {r['threshold']}, each edit grouped with its original: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["per_edit"].items()))
    print("\nimgsearch without the keeper guard (every pair scoring >= threshold):")
    for r in rows:
        if "ungrouped" in r:
            u = r["ungrouped"]
            print(f"  {r['threshold']}: {u['pairs']} pairs, precision {u['precision']:.3f}, recall {u['recall']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
