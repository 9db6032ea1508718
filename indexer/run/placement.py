"""Where the index folder is, against the sources of a run (issue 32): said, or refused, before anything is read.

An index folder inside a folder being indexed is allowed (``inputs/outputs.py`` never lists it): the run says
so in one line of its summary, every run.  An index folder that is a source, or holds one, is refused: every
image in it would be left out as imgsearch's own output, and the run would index nothing.  Sources that are
not local folders or files (URIs, lists) are not compared: their files are left out as they are listed.
"""

from __future__ import annotations

import os
from typing import Sequence

from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.texts import display_text
from imgsearch.indexer.inputs.sources import LIST_SUFFIXES


def _local(source) -> str | None:
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        return None
    return os.path.realpath(text) if os.path.exists(text) else None


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def index_placement(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike) -> list[str]:
    """The lines to say about ``index_dir`` among ``sources``; InvalidInputError if it is or holds one."""
    index_real = os.path.realpath(os.fspath(index_dir))
    notes = []
    for source in sources:
        real = _local(source)
        if real is None or (os.path.isfile(real) and os.path.splitext(real)[1].lower() in LIST_SUFFIXES):  # a list is read, not indexed
            continue
        shown = display_text(os.fsdecode(os.fspath(source)))
        if _inside(real, index_real):
            what = "is" if real == index_real else "holds"
            raise InvalidInputError(
                f"the index folder {display_text(os.fsdecode(os.fspath(index_dir)))} {what} the source {shown}: "
                "everything in an index folder is left out as imgsearch's own output, so nothing would be "
                f"indexed; give --index a folder outside {shown} (e.g. {os.path.dirname(real) or '.'}/"
                f"{os.path.basename(real) or 'images'}-index)")
        if os.path.isdir(real) and _inside(index_real, real):
            notes.append(f"note: the index folder {display_text(os.fsdecode(os.fspath(index_dir)))} is inside "
                         f"{shown}, which is indexed: its files are left out, never indexed")
    return notes
