"""Decoding images with Pillow into what a CNN expects.

Every image, whatever its format or mode, becomes an 8-bit RGB picture the
right way up (EXIF orientation applied, transparency composited on white,
first frame of an animation), then a square crop of the model's input size.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Refuse absurd declared sizes (decompression bombs) instead of allocating them.
MAX_PIXELS = 180_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # Pillow warns above this, errors above 2x
ImageFile.LOAD_TRUNCATED_IMAGES = False

EXIF_ORIENTATION = 0x0112

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff"}
)

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


class ImageDecodeError(ValueError):
    """The input is not an image Pillow can decode; the message says why."""


@dataclass(frozen=True)
class DecodedImage:
    array: np.ndarray  # (S, S, 3) uint8, the model input
    width: int  # original size, after EXIF rotation
    height: int


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not source:
            raise ImageDecodeError("empty file (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            if path.stat().st_size == 0:
                raise ImageDecodeError("empty file (0 bytes)")
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    try:
        return Image.open(source)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image Pillow recognises") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency goes on a white background."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.uint32)  # (h, w)
        img = Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr / top * 255).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def center_crop_resize(img: Image.Image, size: int) -> np.ndarray:
    """Scale the shorter side to ``size`` and crop the centre: -> (size, size, 3) uint8."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    # resize() with box crops in source coordinates, so the crop costs nothing extra.
    box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
    out = img.resize((size, size), Image.BICUBIC, box=box, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


def load_rgb(source: ImageSource, min_size: int | None = None) -> tuple[Image.Image, int, int]:
    """Decode ``source`` into an upright 8-bit RGB image.

    Returns (image, width, height) where width/height are the original size
    as displayed (after EXIF rotation).  With ``min_size``, JPEGs may be
    decoded at reduced scale (1/2, 1/4, 1/8) while both sides stay >= min_size.
    Raises ImageDecodeError with a one-line reason for anything that is not a
    usable image (empty, truncated, wrong format, too large, unreadable).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(source)
            if getattr(img, "is_animated", False):
                img.seek(0)
            width, height = img.size
            if min(width, height) < 1:
                raise ImageDecodeError(f"image has no pixels ({width}x{height})")
            if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width  # reported as displayed, the right way up
            if min_size and img.format == "JPEG":
                img.draft("RGB", (min_size, min_size))
            img = ImageOps.exif_transpose(img)
            img.load()
            return _to_rgb(img), width, height
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def decode_image(source: ImageSource, size: int) -> DecodedImage:
    """Decode ``source`` (path, bytes, file object or PIL image) into a (size, size, 3) model input."""
    img, width, height = load_rgb(source, min_size=size)
    return DecodedImage(center_crop_resize(img, size), width, height)
