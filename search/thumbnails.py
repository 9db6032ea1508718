"""Reading an indexed file again, checked to be the one indexed, and bounded previews of it.

Every read of an indexed image's file after indexing goes through ``read_indexed``: a region query by id,
thumbnails, explanations, the keypoint checks of duplicates.  A file is read whole and its bytes checked
against what its shard stored: its size first (a different size is a changed file, nothing to hash), then
its sha256 (a file only touched, same bytes, is fine).  The bytes checked are the bytes decoded, so a file
replaced between the check and the decoding cannot slip through.  A changed file is ``ChangedFileError``
(HTTP 409 ``file_changed``), a file gone or unreadable ``ImageUnavailableError`` (404): neither is ever
answered for as if it were the indexed picture.  Hashing costs about 1 ms a megabyte: 1.7 ms of a
34 ms thumbnail of a 12 MP JPEG (scripts/bench_checked_reads.py), so every read is checked, none trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time

from imgsearch.indexer.folder.texts import display_text
from imgsearch.indexer.inputs.filesystems import is_uri, read_bytes
from imgsearch.indexer.inputs.images import ImageDecodeError, PreviewTooLargeError, load_rgb, read_image_file
from imgsearch.search.errors import ChangedFileError, ImageUnavailableError, UnknownIdError

REINDEX = "re-index its folder (imgsearch index) to search, show or explain the new picture"


def read_indexed(engine, row_id: int) -> bytes:
    """The bytes of indexed image ``row_id``'s file, checked to be those indexed (``engine``: a SearchEngine).

    UnknownIdError for an id not in the index, ImageUnavailableError when its file cannot be read,
    ChangedFileError when it no longer holds the indexed bytes (the message says what changed).
    """
    row = engine.catalog.row(row_id)
    if row is None:
        raise UnknownIdError(row_id)
    path = engine.catalog.path(row)
    sha256, size, mtime = engine.catalog.file_record(row)
    return read_checked(path, sha256, size, mtime, name=f"image {row_id}")


def read_checked(path: str, sha256: str, size: int | None, mtime: int | None, *, name: str) -> bytes:
    """The bytes at ``path`` if they are those indexed (``sha256``; ``size`` and ``mtime`` as stored, None
    where unknown); ``name`` stands for the image in the errors' messages.  A local path is looked at before
    it is read: a named pipe, a device or a folder in its place is unavailable (never read: a pipe would
    block, /dev/zero fill the memory), a file of another size changed (never read either)."""
    shown = display_text(path)
    try:
        if is_uri(path):
            data = read_bytes(path)
        else:
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode) and size is not None and st.st_size != size:
                raise _changed(name, shown, f"its size is {st.st_size:,} bytes, {size:,} when it was indexed",
                               mtime, st.st_mtime)
            data = read_image_file(path)  # opened non-blocking, a regular file or ImageDecodeError saying what
    except ChangedFileError:
        raise
    except (OSError, ImageDecodeError) as exc:
        reason = (exc.strerror or str(exc) or type(exc).__name__) if isinstance(exc, OSError) else str(exc)
        raise ImageUnavailableError(f"{name} is in the index but its file {shown} is not readable any more: "
                                    f"{reason}") from exc
    if size is not None and len(data) != size:
        raise _changed(name, shown, f"its size is {len(data):,} bytes, {size:,} when it was indexed", mtime, None)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _changed(name, shown, "its content is not the indexed content (sha256 differs)", mtime,
                       None if is_uri(path) else _mtime(path))
    return data


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _changed(name: str, shown: str, what: str, stored_mtime: int | None, now_mtime: float | None) -> ChangedFileError:
    when = ""
    if stored_mtime is not None and now_mtime is not None and int(now_mtime) != stored_mtime:
        when = f"; modified {_stamp(now_mtime)}, indexed as modified {_stamp(stored_mtime)}"
    return ChangedFileError(f"{name}'s file {shown} has changed since it was indexed ({what}{when}): {REINDEX}")


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def load_indexed(engine, row_id: int, **options):
    """Indexed image ``row_id`` as ``load_rgb`` returns it, (RGB image, width, height), from its checked
    bytes; ``options`` go to ``load_rgb``.  ImageUnavailableError when those bytes do not decode."""
    data = read_indexed(engine, row_id)
    try:
        return load_rgb(data, **options)
    except PreviewTooLargeError as exc:
        raise PreviewTooLargeError(f"image {row_id}: {exc}") from None
    except ImageDecodeError as exc:
        raise ImageUnavailableError(f"image {row_id} is in the index but its file is not readable any more: "
                                    f"{exc}") from exc


def load_indexed_image(engine, row_id: int, max_pixels: int):
    """Indexed image ``row_id`` decoded whole, upright RGB (a region query crops it at full resolution)."""
    return load_indexed(engine, row_id, max_pixels=max_pixels)[0]


def thumbnail_jpeg(engine, row_id: int, size: int | None, max_pixels: int, *,
                   max_decoded_pixels: int | None = None) -> bytes:
    """Indexed image ``row_id`` as JPEG bytes, fitted in ``size`` x ``size`` if given.

    ``max_pixels`` is the indexer's limit, not the uploads': the file is one the index accepted.
    ``max_decoded_pixels`` bounds the memory a preview takes: a JPEG is decoded at the smallest
    scale that still fills ``size`` (1/2 ... 1/8), any other format whole, so a larger one is
    refused with PreviewTooLargeError, an ImageTooLargeError (checked from the header, before decoding).
    """
    img, _, _ = load_indexed(engine, row_id, min_size=size, max_pixels=max_pixels,
                             max_decoded_pixels=max_decoded_pixels)
    if size:
        img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()
