#!/usr/bin/env python
"""Near-duplicate detection on real images: imgsearch against imagededup's hashing, in one run.

The benchmark (made here, seeded): 76 tiles of scikit-image's photographs,
each with 8 edits (80 % and 50 % crops, 10 degree rotation, JPEG quality 20,
half size, colour, a sticker over a fifth, a border; indexer/inputs/near_duplicates.py);
48 flat pictures (emoji on white, 64 px) each with 5 edits (half size, JPEG 20,
colour, 80 % crop, border; samples.flat_near_duplicate_set); and look-alikes
that must not be grouped (samples.lookalikes, by kind: clip-art sharing parts =
emoji of one subcategory such as the medals, the balls, mammals and their
faces, clocks; flat art = flags, hearts, geometric shapes, keycaps; MNIST
handwritten digits of one class); tiles of one photograph share no pixels
and are look-alikes of each other.  Truth: an original and its edits are one
group: 76 x 36 + 48 x 15 pairs.

--quick: only the default threshold, with and without keypoints (the index is built once into
--work and kept; tuning the verifier re-runs only the duplicates stage), and --misses FILE
writes one JSON line per true pair not grouped together: its cosine, whether the cosine stage
proposed it (>= KEYPOINT_FLOOR), the keeper it was judged against and the verifier's evidence
against that keeper and against its own original.

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


def export(folder: Path) -> dict[str, dict]:
    """The benchmark's files under ``folder``; returns relative path -> {"group", "set", "edit"}
    (look-alikes: a group of their own, set "alike", edit their family)."""
    import hashlib

    from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set
    from imgsearch.indexer.inputs.samples import flat_near_duplicate_set, lookalikes

    alike = lookalikes()
    flat = flat_near_duplicate_set(exclude={hashlib.sha256(i.image.tobytes()).digest() for i in alike})
    truth = {}
    for kind, items in (("photo", near_duplicate_set()), ("flat", flat), ("alike", alike)):
        for item in items:
            sub = f"alike" if kind == "alike" else f"{'near' if kind == 'photo' else 'flat'}/{item.group:04d}"
            name = item.name if kind == "alike" else item.edit
            rel = f"{sub}/{name}.{'jpg' if item.encoded is not None else 'png'}"
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if item.encoded is not None:
                path.write_bytes(item.encoded)
            else:
                item.image.save(path, compress_level=1)
            truth[rel] = {"group": item.group, "set": kind, "edit": item.edit.removeprefix("lookalike-")}
    return truth


def true_pairs(truth: dict[str, dict]) -> set[frozenset]:
    by_group: dict[int, list[str]] = {}
    for rel, meta in truth.items():
        by_group.setdefault(meta["group"], []).append(rel)
    return {frozenset(p) for members in by_group.values() for p in itertools.combinations(members, 2)}


def score(found: set[frozenset], truth: set[frozenset]) -> dict:
    hits = len(found & truth)
    return {"pairs": len(found), "precision": hits / len(found) if found else 1.0, "recall": hits / len(truth)}


def group_pairs(groups: list[list[str]]) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(set(g)), 2)}


def run_imgsearch(folder: Path, index_dir: Path, truth_map: dict, quick: bool = False,
                  misses: Path | None = None) -> list[dict]:
    import numpy as np

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.features import refresh_features
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.engine import SearchEngine

    truth = true_pairs(truth_map)
    t = time.perf_counter()
    if not index_dir.is_dir():
        index_images([folder], index_dir, IndexConfig(progress=False))
        refresh_features(index_dir, IndexConfig(progress=False))  # the verifier's features, stored once
    index_seconds = time.perf_counter() - t
    engine = SearchEngine.open(index_dir)
    rel = {i: str(Path(engine.get(i).path).relative_to(folder)) for i in engine.ids}
    ids = np.array(sorted(rel))
    vectors = np.stack([engine.vector(int(i)) for i in ids])  # (n, D) stored embeddings (the index is not whitened)
    scores = vectors @ vectors.T  # (n, n): ~1,400 images, small enough to score every pair for the ungrouped line
    rows = []
    for threshold in (DEFAULT_THRESHOLD,) if quick else THRESHOLDS:
        t = time.perf_counter()
        report = engine.duplicates(threshold=threshold, keypoints=False)
        seconds = time.perf_counter() - t
        grouped = score(group_pairs([[rel[i] for i in g.ids] for g in report.groups]), truth)
        a, b = np.nonzero(np.triu(scores >= threshold, 1))
        raw = score({frozenset((rel[int(ids[x])], rel[int(ids[y])])) for x, y in zip(a, b)}, truth)
        rows.append({"method": "imgsearch, cosine only", "threshold": threshold, "seconds": seconds,
                     "index_seconds": index_seconds, **grouped,
                     "ungrouped": raw})
    for threshold in (DEFAULT_THRESHOLD,) if quick else KEYPOINT_THRESHOLDS:  # keypoints found once, reused
        t = time.perf_counter()
        report = engine.duplicates(threshold=threshold, keypoints=True)
        found = group_pairs([[rel[i] for i in g.ids] for g in report.groups])
        rows.append({"method": "imgsearch + keypoints", "threshold": threshold, "seconds": time.perf_counter() - t,
                     "confirmed": report.confirmed, "refuted": report.refuted, **score(found, truth)})
        if threshold == DEFAULT_THRESHOLD:
            rows[-1]["per_edit"] = per_edit(found, truth_map)
            rows[-1]["per_kind"] = per_kind(found, truth_map)
            if misses:
                write_misses(misses, engine, report, rel, truth_map, found, ids, scores)
    return rows


def per_edit(found: set[frozenset], truth_map: dict) -> dict:
    """Share of each edit grouped with its original, photos' and flat pictures' apart ("photo crop50")."""
    originals = {(m["set"], m["group"]): r for r, m in truth_map.items() if m["edit"] == "original"}
    out: dict[str, list] = {}
    for path, m in truth_map.items():
        if m["set"] != "alike" and m["edit"] != "original":
            original = originals[(m["set"], m["group"])]
            out.setdefault(f"{m['set']} {m['edit']}", []).append(frozenset((path, original)) in found)
    return {edit: round(sum(v) / len(v), 3) for edit, v in sorted(out.items())}


def per_kind(found: set[frozenset], truth_map: dict) -> dict:
    """Look-alikes by family (and kind, samples.LOOKALIKE_KINDS): images, how many were grouped with
    anything, and the wrong pairs they are in (tiles of one photograph: family "photo tiles")."""
    from imgsearch.indexer.inputs.samples import LOOKALIKE_KINDS

    out: dict[str, dict] = {}
    for path, m in truth_map.items():
        if m["set"] == "alike":
            family = m["edit"]
            out.setdefault(family, {"kind": LOOKALIKE_KINDS.get(family, "?"), "images": 0, "grouped": 0,
                                    "wrong_pairs": 0})["images"] += 1
    partners: dict[str, int] = {}
    for pair in found:
        x, y = sorted(pair)
        mx, my = truth_map[x], truth_map[y]
        if mx["group"] == my["group"]:
            continue
        for p, mp in ((x, mx), (y, my)):
            partners[p] = partners.get(p, 0) + 1
            family = mp["edit"] if mp["set"] == "alike" else f"{mp['set']} (another original)"
            out.setdefault(family, {"kind": "edits" if mp["set"] != "alike" else "?", "images": 0, "grouped": 0,
                                    "wrong_pairs": 0})["wrong_pairs"] += 1
    for path, m in truth_map.items():
        if m["set"] == "alike" and path in partners:
            out[m["edit"]]["grouped"] += 1
    return dict(sorted(out.items()))


def write_misses(path: Path, engine, report, rel: dict, truth_map: dict, found: set, ids, scores) -> None:
    """One JSON line per true pair (original, edit) not grouped: why (see the module's --misses)."""
    from imgsearch.search.duplicates.groups import KEYPOINT_FLOOR
    from imgsearch.search.duplicates.keypoints import KeypointMatcher
    from imgsearch.search.duplicates.verifier import compare

    by_rel = {r: i for i, r in rel.items()}
    row = {int(i): k for k, i in enumerate(ids)}
    keeper_of = {m: g.keep for g in report.groups for m in g.ids}
    matcher = KeypointMatcher(engine)
    originals = {(m["set"], m["group"]): r for r, m in truth_map.items() if m["edit"] == "original"}
    with path.open("w") as out:
        for edit_path, m in sorted(truth_map.items()):
            if m["set"] == "alike" or m["edit"] == "original":
                continue
            original = originals[(m["set"], m["group"])]
            if frozenset((edit_path, original)) in found:
                continue
            e, o = by_rel[edit_path], by_rel[original]
            keeper = keeper_of.get(o)
            line = {"edit": f"{m['set']} {m['edit']}", "path": edit_path, "cosine": round(float(
                scores[row[o], row[e]]), 3), "in_group": e in keeper_of, "original_in_group": o in keeper_of,
                "original_vs_edit": compare(matcher.features(o), matcher.features(e)).to_dict()}
            line["proposed"] = line["cosine"] >= KEYPOINT_FLOOR
            if keeper is not None and keeper != o:
                line["keeper"] = rel[keeper]
                line["keeper_cosine"] = round(float(scores[row[keeper], row[e]]), 3)
                line["keeper_vs_edit"] = compare(matcher.features(keeper), matcher.features(e)).to_dict()
            out.write(json.dumps(line) + "\n")


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
    ap.add_argument("--quick", action="store_true", help="only the default threshold (the index is kept in --work)")
    ap.add_argument("--misses", type=Path, help="write the true pairs not grouped, with their evidence (JSON lines)")
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

    rows = run_imgsearch(folder, args.work / "index", truth_map, args.quick, args.misses)
    if args.imagededup_python:
        rows += run_imagededup(args.imagededup_python, folder, truth)

    print("\n| method | threshold | pairs found | pair precision | pair recall | seconds |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['threshold']} | {r['pairs']} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['seconds']:.2f} |")
    for r in rows:
        if "per_edit" in r:
            print(f"\nwith keypoints at the default {r['threshold']}, each edit grouped with its original:\n"
                  "| edit | grouped |\n|---|---:|\n"
                  + "\n".join(f"| {k} | {v:.2f} |" for k, v in r["per_edit"].items()))
            print("\nlook-alikes (and other originals' edits) grouped wrongly, by family:\n"
                  "| family | kind | images | grouped with another picture | wrong pairs |\n"
                  "|---|---|---:|---:|---:|\n"
                  + "\n".join(f"| {k} | {v['kind']} | {v['images']} | {v['grouped']} | {v['wrong_pairs']} |"
                               for k, v in r["per_kind"].items()))
    print("\nimgsearch without the keeper guard (every pair scoring >= threshold):")
    for r in rows:
        if "ungrouped" in r:
            u = r["ungrouped"]
            print(f"  {r['threshold']}: {u['pairs']} pairs, precision {u['precision']:.3f}, recall {u['recall']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
