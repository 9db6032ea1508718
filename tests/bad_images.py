"""A corpus of bad, hostile and odd-but-valid image files, made at test time from real photos.

Each case says what must happen to it: skipped by the indexer with a reason
(and what the web API answers when it is uploaded), or indexed like the
reference image it is equivalent to.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes | None  # None: a file-system oddity (pipe, link), made by write_corpus
    reason: str | None = None  # skipped: a fragment of the reason; None: valid, must be indexed
    status: int = 200  # what POST /api/search answers for an upload of ``data``
    size: tuple[int, int] | None = None  # valid: (width, height) as displayed
    same_as: str | None = None  # valid: the case whose embedding it must match
    min_cosine: float = 0.999  # ... this closely


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` RGB pixels, with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame declare ``width`` x ``height`` pixels."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


def png16_rgb(arr8: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one) whose high bytes are ``arr8``."""
    h, w, _ = arr8.shape
    samples = (arr8.astype(">u2") * 257).reshape(h, w * 3)  # 0..255 -> 0..65535, big-endian
    raw = b"".join(b"\0" + row.tobytes() for row in samples)  # filter type 0 per row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


def animated_gif(frames: list[Image.Image]) -> bytes:
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def cases(photos_dir: Path) -> list[Case]:
    coffee = Image.open(photos_dir / "coffee.jpg").convert("RGB")  # 600 x 400
    astronaut = Image.open(photos_dir / "astronaut.jpg").convert("RGB")  # 512 x 512
    rocket = Image.open(photos_dir / "rocket.jpg").convert("RGB")  # 640 x 427
    chelsea = Image.open(photos_dir / "chelsea.jpg").convert("RGB")  # 451 x 300

    upright = encode(coffee, "JPEG", quality=95)
    # stored sideways, with the EXIF tag that turns it upright for display (as a phone does)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # rotate 90 degrees clockwise to display
    sideways = encode(coffee.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)

    grey = np.asarray(chelsea.convert("L"))  # (300, 451)
    palette = chelsea.quantize(64)  # P mode; colour 0 becomes transparent
    index = np.asarray(palette)
    colours = np.array(palette.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    composited = np.where((index == 0)[..., None], np.uint8(255), colours[index])  # white where transparent
    frames = [rocket.quantize(128), rocket.rotate(90).quantize(128), rocket.rotate(180).quantize(128)]
    animated = animated_gif(frames)
    first_frame = encode(frames[0], "GIF")
    cut = len(animated) - len(encode(frames[2], "GIF")) // 2  # ends inside a later frame

    jpeg = encode(astronaut, "JPEG", quality=90)
    png = encode(chelsea, "PNG")
    return [
        # odd but valid: indexed, and equivalent to their reference
        Case("upright.jpg", upright, size=(600, 400)),
        Case("exif_rotated.jpg", sideways, size=(600, 400), same_as="upright.jpg", min_cosine=0.99),
        Case("cmyk.jpg", encode(coffee.convert("CMYK"), "JPEG", quality=95), size=(600, 400),
             same_as="upright.jpg", min_cosine=0.98),
        Case("grey8.png", encode(Image.fromarray(grey), "PNG"), size=(451, 300)),
        Case("grey16.png", encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"), size=(451, 300),
             same_as="grey8.png"),
        Case("astronaut8.png", encode(astronaut, "PNG"), size=(512, 512)),
        Case("rgb16.png", png16_rgb(np.asarray(astronaut)), size=(512, 512), same_as="astronaut8.png"),
        Case("palette_transparent.png", encode(palette, "PNG", transparency=0), size=(451, 300),
             same_as="palette_on_white.png"),
        Case("palette_on_white.png", encode(Image.fromarray(composited), "PNG"), size=(451, 300)),
        Case("first_frame.gif", first_frame, size=(640, 427)),
        Case("animated.gif", animated, size=(640, 427), same_as="first_frame.gif"),
        Case("animated_cut_short.gif", animated[:cut], size=(640, 427), same_as="first_frame.gif"),
        Case("png_named.jpg", png, size=(451, 300)),
        Case("jpeg_named.png", jpeg, size=(512, 512)),
        Case("one_pixel.png", encode(Image.new("RGB", (1, 1), (200, 40, 40)), "PNG"), size=(1, 1)),
        Case("wide_20000x1.png", encode(Image.new("RGB", (20000, 1), (40, 40, 200)), "PNG"), size=(20000, 1)),
        # bad: skipped with a reason; uploads get 400 (413 for what is too large)
        Case("empty.jpg", b"", "empty file", 400),
        Case("truncated.jpg", upright[: len(upright) // 3], "cannot decode", 400),
        Case("truncated.png", png[: len(png) // 2], "cannot decode", 400),
        Case("page.jpg", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>\n",
             "not an image", 400),
        Case("drawing.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                            b'<rect width="10" height="10"/></svg>\n', "not an image", 400),
        Case("bomb.png", png_declaring(30_000, 30_000), "image too large", 413),
        Case("bomb.gif", gif_declaring(65_535, 65_535), "image too large", 413),
        # the file system's own oddities
        Case("pipe.jpg", None, "not a regular file (a named pipe)"),
        Case("dev_zero.jpg", None, "not a regular file (a character device)"),
        Case("broken_link.jpg", None, "broken symbolic link"),
    ]


def write_corpus(folder: Path, photos_dir: Path) -> dict[str, Case]:
    """Write every case into ``folder``, and a link to ``folder`` in it; returns name -> case."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for case in cases(photos_dir):
        path = folder / case.name
        if case.data is not None:
            path.write_bytes(case.data)
        elif case.name == "pipe.jpg":
            os.mkfifo(path)  # nobody ever writes: opening it for reading would block for ever
        elif case.name == "dev_zero.jpg":
            path.symlink_to("/dev/zero")  # endless: reading it to the end would fill the memory
        elif case.name == "broken_link.jpg":
            path.symlink_to(folder / "gone" / "nowhere.jpg")
        out[case.name] = case
    # a link back to the corpus itself: walked once, not until the path is too long
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    return out
