"""Regions of a query image: ``box = [x0, y0, x1, y1]``, fractions of its width and height.

The box is read in the image's displayed orientation (after its EXIF rotation, as every
viewer shows it) and cropped from the full-resolution picture, before the model's resize:
a small region of a large photo keeps all its detail.  Fractions, not pixels, so a box drawn
on a thumbnail means the same region of the full image.
"""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image

from imgsearch.indexer.errors import quote
from imgsearch.indexer.inputs.images import ImageSource, load_rgb
from imgsearch.search.errors import InvalidBoxError, InvalidFieldError
from imgsearch.search.query.numbers import number_field

BOX_FORMAT = "[x0, y0, x1, y1], fractions of the image's width and height with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"


Box = tuple[float, float, float, float]


def parse_box(raw) -> Box:
    """``raw`` as a box: a sequence of four numbers, or a string ``"x0,y0,x1,y1"`` (a form field, the CLI).

    Raises InvalidBoxError saying what is wrong: not four numbers, outside the image, or of zero area.
    """
    values = raw
    if isinstance(raw, str):
        text = raw.strip().removeprefix("[").removesuffix("]")
        values = [part.strip() for part in text.split(",")]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 4:
        raise InvalidBoxError(f"box must be {BOX_FORMAT}; got {quote(raw)}")
    box = []
    for v in values:
        try:  # the one strict parser: no bool, NaN, infinity, 10**400 or other scripts' digits
            box.append(number_field(v, "box", -math.inf, math.inf))
        except InvalidFieldError:
            raise InvalidBoxError(f"box must be four numbers (finite, in decimal), got {quote(raw)}") from None
    x0, y0, x1, y1 = box
    if not all(0 <= v <= 1 for v in box):
        raise InvalidBoxError(f"box {quote(raw)} reaches outside the image: each value is a fraction of the "
                              f"image's width or height, between 0 and 1")
    if x1 <= x0 or y1 <= y0:
        raise InvalidBoxError(f"box {quote(raw)} has no area: it needs x0 < x1 and y0 < y1 "
                              f"(left, top, right, bottom)")
    return x0, y0, x1, y1


def pixel_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box in pixels of a ``width`` x ``height`` image: every pixel it touches, at least one."""
    x0, y0, x1, y1 = box
    left, top = min(math.floor(x0 * width), width - 1), min(math.floor(y0 * height), height - 1)
    right, bottom = max(left + 1, math.ceil(x1 * width)), max(top + 1, math.ceil(y1 * height))
    return left, top, min(right, width), min(bottom, height)


def crop_region(source: ImageSource, box, max_pixels: int) -> Image.Image:
    """The region ``box`` of ``source`` (path, bytes, file object or PIL image) as an upright RGB image.

    Decoded whole (no reduced-scale JPEG decoding: the region is a fraction of it), so an image over
    ``max_pixels`` is refused (ImageTooLargeError) before a pixel is decoded, as any query image is.
    """
    box = parse_box(box)
    img, _, _ = load_rgb(source, max_pixels=max_pixels)
    region = img.crop(pixel_box(box, *img.size))
    # upright already: no EXIF or XMP orientation of the file may be applied to it a second time
    region.info = {}
    return region
