"""Decoding images with Pillow into what a CNN expects.

Every image, whatever its format or mode, becomes an 8-bit RGB picture the
right way up (EXIF orientation applied, transparency composited on white,
first frame of an animation), then a square crop of the model's input size.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgsearch.indexer.config import MAX_PIXELS
from imgsearch.indexer.errors import ImageError

EXIF_ORIENTATION = 0x0112

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
     ".heic", ".heif", ".hif", ".avif"}  # HEIF: pillow-heif; AVIF: Pillow's own plugin
)

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


class ImageDecodeError(ImageError, ValueError):
    """The input is not an image Pillow can decode; the message says why."""


class ImageTooLargeError(ImageDecodeError):
    """The image declares more pixels than the caller's limit (a decompression bomb, or just huge)."""


class PreviewTooLargeError(ImageTooLargeError):
    """Decoding the image would take more pixels than a preview may (``load_rgb(max_decoded_pixels=...)``)."""


@dataclass(frozen=True)
class DecodedImage:
    array: np.ndarray  # (S, S, 3) uint8, the model input
    width: int  # original size, after EXIF rotation
    height: int


_FILE_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def read_image_file(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file, or ImageDecodeError saying why not.

    Opened non-blocking and checked before reading: a named pipe would block
    the reader for ever, and a link to /dev/zero would fill the memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageDecodeError(f"broken symbolic link (to {os.readlink(path)})") from None
        raise ImageDecodeError("cannot read file: no such file") from None
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageDecodeError(f"not a regular file ({_FILE_KINDS.get(stat.S_IFMT(mode), 'special file')})")
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as exc:  # EIO on a failing disk, for one
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    return data


PILLOW_BLOCK_BYTES = 1 << 30  # an image's pixels in one block (MAX_PIXELS x 4 bytes fits): see use_decoder_settings
_QUIET_BOMB_WARNING = ("ignore", None, Image.DecompressionBombWarning, None, 0)  # as warnings.filters holds it


def use_decoder_settings() -> None:
    """Set the process-wide Pillow settings the decoder relies on; called before every decode.

    They are Pillow globals, so they are set when decoding starts, not when this
    module is imported: a program that imports imgsearch for its file listing
    or its errors keeps Pillow as it configured it.

    load_rgb checks each image's declared size against the caller's limit (at
    most MAX_PIXELS) before a pixel is decoded, so a decompression bomb (a small
    file declaring a huge size) is refused, never allocated. Pillow's own guard
    stays as a backstop for the sizes it checks inside its plugins (ICO
    sub-images, GIF frames, TIFF tiles): it raises above 2x this. Its warning
    between 1x and 2x is redundant: load_rgb refuses all those images.
    A truncated file is an error, never a half-grey picture.
    """
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    _register_heif()
    # an image's pixels in one block: a large one (over glibc's largest mmap threshold, 32 MB) is its own
    # mapping, given back when freed; in 16 MB blocks (Pillow's default) it stays in the decoding thread's malloc
    # arena, so every server thread kept its peak (8 threads explaining 49 MP PNGs one at a time held 2.9 GB)
    if Image.core.get_block_size() < PILLOW_BLOCK_BYTES:
        Image.core.set_block_size(PILLOW_BLOCK_BYTES)
    # looked up each time, not once: warnings.catch_warnings (pytest, for one) drops filters on exit
    if _QUIET_BOMB_WARNING not in warnings.filters:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _register_heif() -> None:
    """HEIC/HEIF photos (phones' default) open with Pillow once pillow-heif registers its opener: once per
    process, with its EXIF orientation left for ``load_rgb`` to apply, as for every other format."""
    global _HEIF_REGISTERED
    if _HEIF_REGISTERED:
        return
    _HEIF_REGISTERED = True
    try:
        import pillow_heif
    except ImportError:  # a HEIC file is then "not an image Pillow recognises"; pillow-heif is a dependency
        return
    pillow_heif.register_heif_opener()


_HEIF_REGISTERED = False


def _open(source: ImageSource) -> Image.Image:
    use_decoder_settings()
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, os.PathLike)):
        source = read_image_file(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not source:
            raise ImageDecodeError("empty file (0 bytes)")
        source = io.BytesIO(source)
    try:
        return Image.open(source)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image Pillow recognises") from exc
    except OSError as exc:  # the bytes are in memory by now: a broken header, not a failed read
        raise ImageDecodeError(f"cannot decode image: {exc.strerror or exc}") from exc


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image too large: {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"at most {max_pixels / 1e6:g} megapixels are decoded"
        )


def _bomb_error(exc: Exception, max_pixels: int) -> ImageTooLargeError:
    """Pillow's own guard fired (above 2 x MAX_PIXELS): say it in the same terms as _check_pixels."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    declared = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "more pixels than Pillow allows"
    return ImageTooLargeError(f"image too large: {declared}; at most {max_pixels / 1e6:g} megapixels are decoded")


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


RESAMPLING = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
"""The filters the final resize may use (Pillow's, antialiased when they shrink).  An index records its
own (manifest ``backbone.resample``; none recorded: bicubic, every index before issue 15) and every
image embedded for it, indexed or queried, is resized with that one."""
# new indexes: bilinear resizes in 0.8 ms what bicubic does in 1.3 (a 224 crop of a drafted JPEG, one core),
# and scored as well or better on every set of scripts/eval_precision.py (MNIST P@10 +0.019)
DEFAULT_RESAMPLE = "bilinear"


def center_crop_resize(img: Image.Image, size: int, resample: str = DEFAULT_RESAMPLE) -> np.ndarray:
    """Scale the shorter side to ``size`` and crop the centre: -> (size, size, 3) uint8."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    # resize() with box crops in source coordinates, so the crop costs nothing extra.
    box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
    out = img.resize((size, size), RESAMPLING[resample], box=box, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


def load_rgb(source: ImageSource, min_size: int | None = None,
             max_pixels: int = MAX_PIXELS, max_decoded_pixels: int | None = None) -> tuple[Image.Image, int, int]:
    """Decode ``source`` into an upright 8-bit RGB image.

    Returns (image, width, height) where width/height are the original size
    as displayed (after EXIF rotation).  With ``min_size``, JPEGs may be
    decoded at reduced scale (1/2, 1/4, 1/8) while both sides stay >= min_size.
    Raises ImageDecodeError with a one-line reason for anything that is not a
    usable image (empty, truncated, wrong format, unreadable), and its
    subclass ImageTooLargeError for an image over ``max_pixels``; never
    another exception type, whatever the bytes.  ``max_decoded_pixels``: also
    ImageTooLargeError when more than this many pixels would be decoded (a
    JPEG counts at the reduced scale it is decoded at), to bound the memory a
    preview takes.
    """
    try:
        img = _open(source)
        if img.tell() != 0:  # a PIL image handed in on a later frame; files open on their first
            img.seek(0)
        # Never ask is_animated/n_frames: they parse later frames, and a download cut short in
        # the second frame of a GIF would fail although the first frame is whole.
        width, height = img.size
        if min(width, height) < 1:
            raise ImageDecodeError(f"image has no pixels ({width}x{height})")
        _check_pixels(width, height, max_pixels)  # from the header, before decoding anything
        if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width  # reported as displayed, the right way up
        if min_size and img.format == "JPEG":
            img.draft("RGB", (min_size, min_size))
        if max_decoded_pixels is not None and img.size[0] * img.size[1] > max_decoded_pixels:
            w, h = img.size
            raise PreviewTooLargeError(f"image too large to preview: {w} x {h} pixels would be decoded "
                                     f"({w * h / 1e6:.1f} megapixels), the limit is {max_decoded_pixels / 1e6:g}")
        img = ImageOps.exif_transpose(img)
        img.load()
        return _to_rgb(img), width, height
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(exc, max_pixels) from exc
    except MemoryError as exc:
        raise ImageTooLargeError("image too large: not enough memory to decode it") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    except Exception as exc:  # Pillow's parsers can fail on hostile bytes with any error (IndexError, struct.error...)
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def decode_image(source: ImageSource, size: int, max_pixels: int = MAX_PIXELS,
                 resample: str = DEFAULT_RESAMPLE) -> DecodedImage:
    """Decode ``source`` (path, bytes, file object or PIL image) into a (size, size, 3) model input.

    Raises only ImageDecodeError (ImageTooLargeError over ``max_pixels``).
    """
    img, width, height = load_rgb(source, min_size=size, max_pixels=max_pixels)
    try:
        return DecodedImage(center_crop_resize(img, size, resample), width, height)
    except MemoryError as exc:
        raise ImageTooLargeError("image too large: not enough memory to resize it") from exc
