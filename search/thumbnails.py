"""Indexed images re-encoded as JPEG thumbnails for the page and the API."""

from __future__ import annotations

import io

from imgsearch.indexer.inputs.filesystems import is_uri, read_bytes
from imgsearch.indexer.inputs.images import ImageDecodeError, PreviewTooLargeError, load_rgb
from imgsearch.search.errors import ImageUnavailableError


def load_indexed(path: str, **options):
    """The indexed image at ``path`` (a local path, or a URI such as hdfs:// or s3:// read through its file
    system) as ``load_rgb`` returns it: (RGB image, width, height); ``options`` go to ``load_rgb``."""
    return load_rgb(read_bytes(path) if is_uri(path) else path, **options)


def load_indexed_image(path: str, max_pixels: int, *, name: str):
    """The indexed image at ``path`` decoded whole, upright RGB (a region query crops it at full
    resolution), or ImageUnavailableError naming it as ``name`` when its file is no longer readable."""
    try:
        return load_indexed(path, max_pixels=max_pixels)[0]
    except (ImageDecodeError, OSError) as exc:
        raise ImageUnavailableError(f"{name} is in the index but its file is not readable any more: {exc}") from exc


def thumbnail_jpeg(path: str, size: int | None, max_pixels: int, *, name: str,
                   max_decoded_pixels: int | None = None) -> bytes:
    """The image at ``path`` (a local path or a URI) as JPEG bytes, fitted in ``size`` x ``size`` if given.

    ``max_pixels`` is the indexer's limit, not the uploads': the file is one the index accepted.
    ``max_decoded_pixels`` bounds the memory a preview takes: a JPEG is decoded at the smallest
    scale that still fills ``size`` (1/2 ... 1/8), any other format whole, so a larger one is
    refused with PreviewTooLargeError, an ImageTooLargeError (checked from the header, before decoding).
    ``name`` stands for the image in the error's message, which the web app sends to its client.
    """
    try:
        img, _, _ = load_indexed(path, min_size=size, max_pixels=max_pixels, max_decoded_pixels=max_decoded_pixels)
    except PreviewTooLargeError as exc:
        raise PreviewTooLargeError(f"{name}: {exc}") from None
    except (ImageDecodeError, OSError) as exc:
        raise ImageUnavailableError(f"{name} is in the index but its file is not readable any more: {exc}") from exc
    if size:
        img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()
