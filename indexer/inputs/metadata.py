"""What indexing records about a file besides its pixels: size, modification time, EXIF date and camera.

These become the shards' nullable ``file_size``, ``mtime``, ``taken``,
``camera_make`` and ``camera_model`` columns (``indexer/folder/store.py``),
which search filters on (``search/query/filters.py``).  Capturing them never fails
a file: a value that cannot be read (a URI's modification time, an image
without EXIF, a hostile or malformed EXIF block) is None, stored as null.

Times are whole seconds since the epoch.  ``taken`` is EXIF DateTimeOriginal
(the camera's clock, which records no time zone) read as if it were UTC, so
``taken>=2020-01-01`` means what the camera showed.
"""

from __future__ import annotations

import calendar
import io
import os
import re
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime

EXIF_IFD = 0x8769  # the Exif sub-IFD, where DateTimeOriginal lives
DATE_TIME_ORIGINAL = 0x9003
MAKE, MODEL = 0x010F, 0x0110
_WARNINGS_LOCK = threading.Lock()
MAX_TEXT = 64  # a camera's make or model longer than this is cut: EXIF strings can be any size
_EXIF_DATE = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class FileInfo:
    """One file's recorded metadata; None: unknown (stored as null)."""

    file_size: int | None = None  # bytes
    mtime: int | None = None  # seconds since the epoch
    taken: int | None = None  # EXIF DateTimeOriginal, seconds since the epoch as if UTC
    camera_make: str | None = None
    camera_model: str | None = None


FIELDS = ("file_size", "mtime", "taken", "camera_make", "camera_model")


def capture(data: bytes, path: str | None, *, local: bool = True) -> FileInfo:
    """The metadata of a file read as ``data`` from ``path``; ``local``: a local path whose time can be read."""
    mtime = None
    if local and path is not None:
        try:
            mtime = int(os.stat(path).st_mtime)
        except (OSError, ValueError, OverflowError):
            mtime = None
    taken, make, model = exif_fields(data)
    return FileInfo(len(data), mtime, taken, make, model)


def exif_fields(data: bytes) -> tuple[int | None, str | None, str | None]:
    """(taken, camera make, camera model) from an image's EXIF; Nones for anything absent or unreadable."""
    from PIL import Image

    try:
        # one thread at a time: catch_warnings saves and restores the process's filters, so two threads
        # interleaving it (decoding threads, server threads) could leave "ignore everything" behind
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF: it is only metadata here
            with Image.open(io.BytesIO(data)) as img:  # reads the header only, never the pixels
                exif = img.getexif()
                make, model = exif.get(MAKE), exif.get(MODEL)
                taken = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL)
    except Exception:  # hostile bytes can fail Pillow's EXIF parser with any error: the file is still indexed
        return None, None, None
    return parse_exif_date(taken), clean_text(make), clean_text(model)


def parse_exif_date(value) -> int | None:
    """``YYYY:MM:DD HH:MM:SS`` -> seconds since the epoch (as if UTC); None when absent or malformed."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    found = _EXIF_DATE.match(value.strip())
    if not found:
        return None
    year, month, day, hour, minute, second = map(int, found.groups())
    if not (1800 <= year <= 2200 and 1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59
            and second <= 60):
        return None  # "0000:00:00 00:00:00" and other placeholders cameras write
    try:  # datetime refuses 31 February, where timegm would roll over into March
        return calendar.timegm(datetime(year, month, day, hour, minute, min(second, 59)).timetuple())
    except (ValueError, OverflowError):
        return None


def clean_text(value) -> str | None:
    """An EXIF string as stored: control characters and NULs out, trimmed, at most MAX_TEXT characters."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    value = _CONTROL.sub(" ", value).strip()[:MAX_TEXT].strip()
    value = value.encode("utf-8", "replace").decode("utf-8", "replace")  # no lone surrogates in a column
    return value or None
