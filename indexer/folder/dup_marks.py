"""Marks of "not a duplicate" as stored in the index folder: ``duplicate-marks.json`` (optional).

A person reviewing duplicate groups says that two images are *not* the same
picture (a pair, or every pair of a group).  Each mark is one pair, keyed by
the two images' **sha256** (their content), not by their ids, so it survives
every later version: incremental indexing, compaction, a reload, and a file
removed and indexed again with the same bytes (a new id, the same content);
a file whose bytes changed is another picture, and its marks no longer apply.
The ids and paths at the time of marking are kept beside, to list marks whose
images are no longer indexed::

    {"format": 1, "marks": [{"sha256": [A, B], "ids": [3, 17], "paths": [...], "marked": "2026-..."}]}

with A < B.  Written whole and atomically (``indexer/atomic.py``) by
``indexer/run/dup_marks.py`` under the writer lock; not named by the manifest
(marks are not versioned: every version reads the one file, and a new version
leaves it alone).  Read by ``search/duplicates/marks.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imgsearch.indexer.atomic import atomic_write_bytes
from imgsearch.indexer.folder.store import IndexFormatError

MARKS_FILE = "duplicate-marks.json"
MARKS_FORMAT = 1
MAX_MARK_IDS = 200  # ids in one mark: every pair among them is stored (19,900 for 200)


@dataclass(frozen=True)
class Mark:
    """One pair marked "not a duplicate": ``sha256`` sorted; ``ids`` and ``paths`` in the same order."""

    sha256: tuple[str, str]
    ids: tuple[int, int]
    paths: tuple[str, str]
    marked: str

    def to_dict(self) -> dict:
        return {"sha256": list(self.sha256), "ids": list(self.ids), "paths": list(self.paths), "marked": self.marked}


def marks_path(root) -> Path:
    return Path(root) / MARKS_FILE


def read_marks(root) -> list[Mark]:
    """The folder's marks, in the order they were made; none when it has no marks file."""
    path = marks_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise IndexFormatError(f"{path} is unreadable: {exc}") from exc
    fix = (f"delete it (the marks are lost: mark the pairs again with 'imgsearch not-duplicates --index "
           f"{Path(root)} ID ID')")
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("format") != MARKS_FORMAT or not isinstance(body.get("marks"), list):
            raise ValueError(f"not a format {MARKS_FORMAT} marks file")
        marks = []
        for m in body["marks"]:
            shas, ids, paths = tuple(m["sha256"]), tuple(int(i) for i in m["ids"]), tuple(m["paths"])
            if len(shas) != 2 or len(ids) != 2 or len(paths) != 2 or not shas[0] < shas[1] or \
                    not all(isinstance(s, str) for s in shas + paths) or not isinstance(m["marked"], str):
                raise ValueError(f"a damaged mark {m!r:.200}")
            marks.append(Mark(shas, ids, paths, m["marked"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise IndexFormatError(f"{path} is damaged ({exc}): {fix}") from None
    return marks


def write_marks(root, marks: list[Mark]) -> None:
    """Replace the folder's marks file with ``marks`` (atomically)."""
    path = marks_path(root)
    body = {"format": MARKS_FORMAT, "marks": [m.to_dict() for m in marks]}
    atomic_write_bytes(path, (json.dumps(body, indent=1) + "\n").encode())


def listing(marks: list[Mark], by_sha: dict[str, int]) -> list[dict]:
    """Marks as listed (CLI, API): ``ids`` the ids holding their two contents in a version (``by_sha``; None:
    not indexed any more), ``marked_ids`` and ``paths`` as when marked, ``sha256``, ``marked`` (when)."""
    return [{"ids": [by_sha.get(s) for s in m.sha256], "marked_ids": list(m.ids), "paths": list(m.paths),
             "sha256": list(m.sha256), "marked": m.marked} for m in marks]
