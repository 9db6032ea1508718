"""The local features side table: ``local-features.parquet`` in an index folder (optional).

One row per indexed image: its id, the sha256 of the content the features
were computed from, and its ``LocalFeatures`` (``indexer/inputs/local_features.py``:
keypoints, descriptors, a small RGB thumbnail), about 13 KB.  The duplicates
verifier reads them instead of decoding the files again.  A row counts only
while its sha256 is the one the version's shards hold for the id (a changed
file's features are stale and ignored); an image without a row is read from
its file.  Written by every ``imgsearch index`` run from the pictures it
decodes for the embedding (``update_features``: the new images' rows added,
a re-embedded image's row replaced, removed images' rows dropped, also by
``imgsearch remove``), and whole by ``imgsearch index --refresh-features``
(``indexer/run/features.py``) for an index made before; always atomically
and under the writer lock; not named by the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.inputs.local_features import LocalFeatures
from imgsearch.indexer.memory import release_unused_memory

FEATURES_FILE = "local-features.parquet"
SCHEMA = pa.schema([("id", pa.int64()), ("sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                    ("points", pa.binary()), ("descriptors", pa.binary()), ("thumb_width", pa.int32()),
                    ("thumb_height", pa.int32()), ("thumb", pa.binary())])


def update_features(root, rows: list[tuple[int, str, LocalFeatures]], removed=()) -> int | None:
    """Add ``rows`` (id, sha256, features) to the folder's table (replacing the rows of their ids), drop those
    of the ids ``removed``; returns the table's size in bytes, None when nothing was written.  A table that
    cannot be read is written anew with ``rows`` (the rest come back with --refresh-features)."""
    path = Path(root) / FEATURES_FILE
    gone = {int(i) for i in removed} | {int(i) for i, _, _ in rows}
    if not rows and not (gone and path.is_file()):
        return None
    old = None
    if path.is_file():
        try:
            old = _read_table(path)
        except IndexFormatError:
            old = None
    if old is not None and gone:
        old = old.filter(pa.compute.invert(pa.compute.is_in(old.column("id"), pa.array(sorted(gone), pa.int64()))))
    if old is not None and not rows and old.num_rows == pq.read_metadata(path).num_rows:
        return None
    return _write(path, [old, _table(rows)] if old is not None else [_table(rows)])


def write_features(root, rows: list[tuple[int, str, LocalFeatures]]) -> int:
    """Write the table of ``rows`` (id, sha256, features), replacing any; returns its size in bytes."""
    return _write(Path(root) / FEATURES_FILE, [_table(rows)])


def _write(path: Path, tables: list[pa.Table]) -> int:
    table = pa.concat_tables(tables)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True, use_dictionary=["sha256"])
    return path.stat().st_size


def _table(rows: list[tuple[int, str, LocalFeatures]]) -> pa.Table:
    columns = {name: [] for name in SCHEMA.names}
    for row_id, sha, f in rows:
        values = (int(row_id), sha, f.size[0], f.size[1], np.ascontiguousarray(f.points, np.float32).tobytes(),
                  np.ascontiguousarray(f.descriptors, np.uint8).tobytes(), f.thumb.shape[1], f.thumb.shape[0],
                  np.ascontiguousarray(f.thumb, np.uint8).tobytes())
        for name, value in zip(SCHEMA.names, values):
            columns[name].append(value)
    return pa.table({n: pa.array(v, SCHEMA.field(n).type) for n, v in columns.items()}, schema=SCHEMA)


class StoredFeatures(Mapping):
    """{id: (sha256, features)} of a side table, read once into its Arrow columns: a row's arrays are views
    of their buffers made when asked (no copy, no Python object per row until then: the decoded table's size,
    about 24 KiB an image, in memory)."""

    def __init__(self, table: pa.Table, path: Path):
        self._ids = table.column("id").to_numpy()
        self._row = {int(i): r for r, i in enumerate(self._ids)}
        self._sha = table.column("sha256").to_pylist()
        self._ints = {n: table.column(n).to_numpy() for n in ("width", "height", "thumb_width", "thumb_height")}
        self._bytes = {n: _binary(table.column(n)) for n in ("points", "descriptors", "thumb")}
        self._path = path

    def __len__(self) -> int:
        return len(self._row)

    def __iter__(self):
        return iter(self._row)

    def __contains__(self, row_id) -> bool:
        return row_id in self._row

    def sha256(self, row_id: int) -> str:
        return self._sha[self._row[row_id]]

    def __getitem__(self, row_id: int) -> tuple[str, LocalFeatures]:
        r = self._row[row_id]
        points = np.frombuffer(self._slice("points", r), np.float32).reshape(-1, 2)
        descriptors = np.frombuffer(self._slice("descriptors", r), np.uint8).reshape(-1, 32)
        width, height = int(self._ints["thumb_width"][r]), int(self._ints["thumb_height"][r])
        thumb = np.frombuffer(self._slice("thumb", r), np.uint8)
        if len(points) != len(descriptors) or len(thumb) != width * height * 3:
            raise IndexFormatError(f"{self._path}: id {row_id} has {len(points)} keypoints, {len(descriptors)} "
                                   f"descriptors and a {width}x{height} thumbnail of {len(thumb)} bytes: it is "
                                   "damaged; write it again with --refresh-features")
        size = (int(self._ints["width"][r]), int(self._ints["height"][r]))
        return self._sha[r], LocalFeatures(points, descriptors, size, thumb.reshape(height, width, 3))

    def _slice(self, name: str, r: int) -> memoryview:
        starts, parts = self._bytes[name]
        c = int(np.searchsorted(starts, r, side="right")) - 1  # the chunk holding row r
        offsets, data = parts[c]
        r -= int(starts[c])
        return data[offsets[r]:offsets[r + 1]]


def _binary(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(first row of each chunk, [(offsets, data)] per chunk) of a binary column: its own buffers, no copy."""
    starts, parts, row = [], [], 0
    for chunk in column.chunks:
        _, offsets, data = chunk.buffers()
        offsets = np.frombuffer(offsets, np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
        starts.append(row)
        parts.append((offsets, memoryview(data) if data is not None else memoryview(b"")))
        row += len(chunk)
    return np.array(starts, np.int64), parts


def read_features(root) -> StoredFeatures:
    """{id: (sha256, features)} of the table, read once; empty when the folder has none."""
    path = Path(root) / FEATURES_FILE
    if not path.is_file():
        return StoredFeatures(SCHEMA.empty_table(), path)
    return StoredFeatures(_read_table(path), path)


def _read_table(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path, page_checksum_verification=True)
        release_unused_memory()  # the pages decompressed on the way: as much again, kept
    except (OSError, pa.ArrowException) as exc:
        raise IndexFormatError(f"{path} is unreadable: {exc}; delete it, or write it again with "
                               "'imgsearch index ... --refresh-features'") from exc
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise IndexFormatError(f"{path} has columns {table.schema.names}, not {SCHEMA.names}: delete it, or "
                               "write it again with 'imgsearch index ... --refresh-features'")
    return table
