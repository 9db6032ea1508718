"""How paths and labels of any bytes are stored in the shards' string columns, and shown.

Linux allows any bytes but NUL and "/" in a file name; Python hands a name
that is not valid UTF-8 over as a ``str`` holding lone surrogates
(``os.fsdecode``, "surrogateescape"), which Parquet's UTF-8 strings cannot
hold.  So a text is stored as itself when it is valid UTF-8, and otherwise
as the escape ``ESCAPE`` (NUL, which no path can contain) followed by its
bytes (``os_bytes``: the name's bytes on disk) percent-encoded; a valid
text that starts with ``ESCAPE`` is escaped the same way, so a stored text
has one reading.  ``decode_text(encode_text(s)) == s``: the path read back
is the one ``open()`` takes.  Old folders hold no escaped texts and read as
before.

``display_text`` is for people and JSON: the text with each undecodable byte
shown as ``\\xNN``, always valid UTF-8.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import quote, unquote_to_bytes

import pyarrow as pa

ESCAPE = "\x00"
# printable ASCII but "%" stays readable in an escaped text; everything else is %XX
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%" and not chr(c).isalnum())


def os_bytes(text: str) -> bytes:
    """The bytes a Linux file name decoded with surrogateescape came from (``os.fsencode``).

    UnicodeEncodeError (a ValueError) for a text holding a lone surrogate no byte decodes to.
    """
    return text.encode("utf-8", "surrogateescape")


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: bytes that were not UTF-8
        return False
    return True


def encode_text(text: str) -> str:
    """``text`` as a shard stores it (valid UTF-8).

    Every name a folder or list gives can be stored; a text with a lone surrogate
    no bytes decode to (only a Python caller can make one) raises UnicodeEncodeError.
    """
    return text if _is_utf8(text) and not text.startswith(ESCAPE) else ESCAPE + quote(os_bytes(text), safe=_SAFE)


def decode_text(stored: str) -> str:
    """The text ``encode_text`` stored: a path is the one the file system names."""
    if not stored.startswith(ESCAPE):
        return stored
    return unquote_to_bytes(stored[1:]).decode("utf-8", "surrogateescape")


def encode_texts(texts: Iterable[str]) -> list[str]:
    return [t if t.isascii() and not t.startswith(ESCAPE) else encode_text(t) for t in texts]  # ASCII: as is


def decode_texts(stored: list[str]) -> list[str]:
    return [decode_text(s) if s.startswith(ESCAPE) else s for s in stored]


def text_array(texts: Iterable[str]) -> pa.Array:
    """A ``path`` or ``label`` column as a shard stores it: how every table written gets them."""
    return pa.array(encode_texts(texts), pa.string())


def texts_of(table: pa.Table, column: str) -> list[str]:
    """A stored ``path`` or ``label`` column as the texts written: how every reader gets them."""
    return decode_texts(table.column(column).to_pylist())


def log_bytes(line: str) -> bytes:
    """A line of a log file: paths as their bytes on disk (surrogateescape), as ``ls`` lists them."""
    try:
        return os_bytes(line)
    except UnicodeEncodeError:  # a lone surrogate no file name decodes to
        return display_text(line).encode()


def display_text(text: str) -> str:
    """``text`` for a person or a JSON reply: undecodable bytes as ``\\xNN``, always valid UTF-8."""
    if _is_utf8(text):
        return text
    try:
        return os_bytes(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
