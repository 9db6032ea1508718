"""The calibration set of the int8 models: the same seeded images on every install.

Full-integer quantisation fixes each activation's range from a representative
set of images, so the set decides the int8 model.  For one backbone to give
one int8 model everywhere, the set must be on every install and drawn the same
way: it is made from the photographs the base dependencies ship (scikit-learn's
``china.jpg`` and ``flower.jpg``, matplotlib's ``grace_hopper.jpg``; the
scikit-image photos are only in the ``samples`` extra and the emoji need npm),
as seeded random crops and mirror images, each decoded by the index's own
decoder (``images.decode_image``) so calibration sees what indexing sees.

Its ``identity`` (recipe, seed, count and the sha256 of the source files'
bytes) names the set in the model cache's key and in the manifest.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch.indexer.errors import MissingDependencyError
from imgsearch.indexer.inputs.images import decode_image

RECIPE = "base-install-photo-crops-v1"
CROP_RANGE = (0.45, 1.0)  # a crop's side, as a fraction of the photo's shorter side


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, without running its ``__init__``."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return Path(f"<{name} not installed>")
    return Path(next(iter(spec.submodule_search_locations)))


def source_files() -> list[Path]:
    """The photographs the base install ships, in a fixed order."""
    # found from the packages' locations, not imported: importing scikit-learn alone costs ~2 s of start-up
    sklearn, matplotlib = _package_dir("sklearn"), _package_dir("matplotlib")
    files = [sklearn / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")]
    files.append(matplotlib / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise MissingDependencyError(
            f"the int8 calibration photos are missing ({', '.join(missing)}): reinstall scikit-learn and "
            "matplotlib, or index with --precision float32")
    return files


@dataclass(frozen=True)
class CalibrationSet:
    """``count`` seeded crops of the base install's photographs, decoded like indexed images."""

    count: int = 200
    seed: int = 0

    def identity(self) -> dict:
        """What names this set: in the model cache's key and in the manifest."""
        files, digest = source_files(), hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return {"recipe": RECIPE, "count": self.count, "seed": self.seed,
                "sources": [p.name for p in files], "sha256": digest.hexdigest()[:16]}

    def images(self, size: int) -> np.ndarray:
        """(count, size, size, 3) uint8: the same pixels on every call and every machine with these files."""
        photos = []
        for path in source_files():
            with Image.open(path) as img:
                photos.append(img.convert("RGB"))
        rng = np.random.default_rng(self.seed)
        out = np.empty((self.count, size, size, 3), np.uint8)
        for i in range(self.count):
            photo = photos[i % len(photos)]
            w, h = photo.size
            side = int(min(w, h) * rng.uniform(*CROP_RANGE))
            left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = photo.crop((left, top, left + side, top + side))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            # bicubic, as since the first recipe: the calibration pixels stay the same whatever an index resizes with
            out[i] = decode_image(crop, size, resample="bicubic").array
        return out


CALIBRATION = CalibrationSet()
