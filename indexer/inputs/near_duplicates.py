"""A near-duplicate benchmark made at run time from scikit-image's bundled photographs.

Each photograph is cut into tiles that share no pixels; every tile is an
*original*, and each original gets the edits a photo collection holds: crops,
a small rotation, strong JPEG re-encoding, downscaling, colour changes, an
overlay and a border.  An original and its edits form a *group*; tiles of one
photograph are the hard negatives (same subject, same texture, no pixel in
common), so "find the edit's original" is not solved by telling photographs
apart.  Everything is seeded: the same images on every machine with the same
scikit-image.

Exported as ``DIR/<group>/<edit>.<ext>`` (``export_near_duplicates``), the folder
label is the group, so leave-one-out precision@1 over an index of the folder is
the share of images whose nearest other image is of their own group (recall@1).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from imgsearch.indexer.errors import MissingDependencyError

# (skimage.data name, rows, columns): tiles of at least ~150 px a side
TILINGS = (
    ("astronaut", 2, 2), ("brick", 2, 2), ("camera", 2, 2), ("cell", 2, 2), ("chelsea", 1, 2), ("clock", 1, 2),
    ("coffee", 2, 3), ("coins", 1, 2), ("colorwheel", 2, 2), ("grass", 2, 2), ("gravel", 2, 2),
    ("hubble_deep_field", 3, 3), ("immunohistochemistry", 2, 2), ("moon", 2, 2), ("retina", 3, 3),
    ("rocket", 2, 3), ("page", 1, 2), ("text", 1, 2),
)


@dataclass(frozen=True)
class Item:
    """One image of the benchmark."""

    name: str  # unique, e.g. "coffee-1-2"
    group: int  # an original and its edits share it
    edit: str  # "original" or the edit's name
    image: Image.Image  # RGB, as decoded
    encoded: bytes | None = None  # the file's bytes when they are not a PNG of ``image`` (the JPEG edit)

    @property
    def source(self) -> bytes | Image.Image:
        """What to decode, as a file of the set would be: its encoded bytes if any, else the picture."""
        return self.image if self.encoded is None else self.encoded


def _crop(fraction: float) -> Callable:
    def edit(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        cw, ch = round(w * fraction), round(h * fraction)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return img.crop((left, top, left + cw, top + ch))
    return edit


def _rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.choice([-1, 1])) * 10.0
    turned = img.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    return ImageOps.crop(turned, border=round(0.09 * min(img.size)))  # most of the white corners


def _jpeg(img: Image.Image, rng: np.random.Generator) -> bytes:
    """Re-encoded at JPEG quality 20: the edit is the file's bytes."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=20)
    return buffer.getvalue()


def _half(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.BILINEAR)


def _colour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(1.4, 1.8)))
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.75, 0.9)))
    return ImageEnhance.Contrast(img).enhance(float(rng.uniform(1.1, 1.3)))


def _occlude(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A solid rectangle over about a fifth of the picture, as a sticker or caption box would."""
    out = img.copy()
    w, h = img.size
    bw, bh = round(w * 0.45), round(h * 0.45)
    left, top = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    out.paste(Image.new("RGB", (bw, bh), colour), (left, top))
    return out


def _border(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.expand(img, border=round(0.1 * max(img.size)), fill=(255, 255, 255))


EDITS: dict[str, Callable] = {
    "crop80": _crop(0.8), "crop50": _crop(0.5 ** 0.5), "rotate10": _rotate, "jpeg20": _jpeg, "half": _half,
    "colour": _colour, "occlude": _occlude, "border": _border,
}
"""name -> edit(image, rng) -> image, or the bytes of an encoded file.  crop50 keeps half the area."""


def originals() -> list[tuple[str, Image.Image]]:
    """(name, RGB tile) for every tile of every photograph in TILINGS, in a fixed order."""
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingDependencyError("the near-duplicate benchmark is made from scikit-image's photographs: "
                                     "pip install 'imgsearch[samples]'") from exc
    out = []
    for photo, rows, cols in TILINGS:
        img = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
        w, h = img.size
        for r in range(rows):
            for c in range(cols):
                box = (c * w // cols, r * h // rows, (c + 1) * w // cols, (r + 1) * h // rows)
                out.append((f"{photo}-{r}-{c}", img.crop(box)))
    return out


def near_duplicate_set(edits: dict[str, Callable] | None = None, seed: int = 0) -> list[Item]:
    """Every original followed by its edits; ``group`` numbers the originals from 0."""
    edits = EDITS if edits is None else edits
    rng = np.random.default_rng(seed)
    items = []
    for group, (name, tile) in enumerate(originals()):
        items.append(Item(name, group, "original", tile))
        for edit, apply in edits.items():
            out = apply(tile, rng)
            if isinstance(out, bytes):
                items.append(Item(f"{name}-{edit}", group, edit, Image.open(io.BytesIO(out)).convert("RGB"), out))
            else:
                items.append(Item(f"{name}-{edit}", group, edit, out))
    return items


FLAT_EDITS = ("half", "jpeg20", "colour", "crop80", "border")
"""The edits a flat picture (clip-art, an emoji) gets in the benchmark: resize, JPEG, colour shift, crop, border."""
FLAT_GROUP = 5_000  # flat originals' groups count from here (photos' from 0, look-alikes' from 10,000)


def export_near_duplicates(dest: str | Path, seed: int = 0) -> int:
    """Write the set as ``dest/<group>/<edit>.png`` (the JPEG edit as its .jpg); returns the number of images."""
    dest = Path(dest)
    items = near_duplicate_set(seed=seed)
    for item in items:
        folder = dest / f"{item.group:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        if item.encoded is not None:
            (folder / f"{item.edit}.jpg").write_bytes(item.encoded)
        else:
            item.image.save(folder / f"{item.edit}.png", compress_level=1)  # fast; the pixels are the same
    return len(items)

