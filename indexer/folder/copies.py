"""Exact copies as stored in the index folder: files whose content (sha256) an indexed image already has.

An indexing run embeds each content once: a second file with the same bytes
is counted (``summary.already_indexed`` / ``duplicates``) and not embedded.
So that ``imgsearch duplicates`` can list those files, the run records them in
a small Parquet table, one row per copy::

    DIR/copies-KEY.parquet    id (the indexed image holding that content), sha256, path

named in the manifest as ``"copies": {"file": ..., "count": N}`` and
published like every other file (size and sha256 in ``files``, kept for one
version after it is replaced).  ``KEY`` is a digest of the rows, so a version
that changes only its copies gets a new file and the one the previous version
names stays untouched.  The table is optional: an index without it (every
index written before it existed) has no copies recorded.  A row whose id no
longer holds that sha256 (the image was removed or its file changed) is not a
copy any more: readers drop it (``read_copies``), writers too (``Copies``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.folder.store import COPIES_PREFIX, IndexFormatError
from imgsearch.indexer.folder.texts import text_array, texts_of

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("sha256", pa.string(), nullable=False),
                    pa.field("path", pa.string(), nullable=False)])


@dataclass
class Copies:
    """The copies of one version as a writer changes them: path -> (id, sha256)."""

    by_path: dict[str, tuple[int, str]] = field(default_factory=dict)
    changed: bool = False

    def add(self, path: str, row_id: int, sha256: str) -> None:
        if self.by_path.get(path) != (row_id, sha256):
            self.by_path[path] = (row_id, sha256)
            self.changed = True

    def drop_paths(self, paths) -> None:
        for path in paths:
            if self.by_path.pop(path, None) is not None:
                self.changed = True

    def drop_ids(self, ids) -> None:
        ids = {int(i) for i in ids}
        gone = [p for p, (i, _) in self.by_path.items() if i in ids]
        self.drop_paths(gone)

    def keep_only(self, holds) -> None:
        """Drop every copy whose id does not hold its sha256 any more; ``holds``: {id: sha256} of the version."""
        self.drop_paths([p for p, (i, sha) in self.by_path.items() if holds.get(i) != sha])


def read_copies(root, manifest: dict) -> Copies:
    """The copies a version records (none for an index without a copies table)."""
    info = manifest.get("copies")
    if not info:
        return Copies()
    path = Path(root) / info["file"]
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        raise IndexFormatError(f"{path} is unreadable: {exc}; 'imgsearch verify --index {root}' lists the "
                               "damage") from exc
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise IndexFormatError(f"{path} has columns {table.schema.names}, not {SCHEMA.names}: it is damaged")
    rows = zip(texts_of(table, "path"), table.column("id").to_pylist(), table.column("sha256").to_pylist())
    return Copies({p: (i, sha) for p, i, sha in rows})


def write_copies(root, copies: Copies) -> dict | None:
    """Write the copies table (atomically); returns the manifest's ``copies`` record, None when there are none."""
    if not copies.by_path:
        return None
    paths = sorted(copies.by_path)
    ids = [copies.by_path[p][0] for p in paths]
    shas = [copies.by_path[p][1] for p in paths]
    digest = hashlib.sha256("\n".join(f"{i}\t{s}\t{p}" for i, s, p in zip(ids, shas, paths))
                            .encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = f"{COPIES_PREFIX}-{digest}.parquet"
    table = pa.table({"id": pa.array(ids, pa.int64()), "sha256": pa.array(shas, pa.string()),
                      "path": text_array(paths)}, schema=SCHEMA)
    with atomic_path(Path(root) / name) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)
    return {"file": name, "count": len(paths)}
