"""The local features side table: ``local-features.arrow`` in an index folder (optional).

One row per indexed image: its id, the sha256 of the content the features
were computed from, and its ``LocalFeatures`` (``indexer/inputs/local_features.py``:
keypoints, descriptors, a small RGB thumbnail), about 22 KiB.  The duplicates
verifier reads them instead of decoding the files again.  A row counts only
while its sha256 is the one the version's shards hold for the id (a changed
file's features are stale and ignored); an image without a row is read from
its file.  Written by every ``imgsearch index`` run from the pictures it
decodes for the embedding (``update_features``: the new images' rows added,
a re-embedded image's row replaced, removed images' rows dropped, also by
``imgsearch remove``), and whole by ``imgsearch index --refresh-features``
(``indexer/run/features.py``) for an index made before; always atomically
and under the writer lock, BATCH rows at a time; not named by the manifest.

The file is Arrow's IPC format, uncompressed, so ``read_features``
memory-maps it: a row's arrays are views of the file's pages, read from disk
when asked, and nothing is decoded ahead (the process's own memory holds the
ids' index, 16 bytes an image, not the table: 1,000,000 images fit beside
their vectors; the worker processes of ``search/duplicates/parallel.py`` map
it too and are sent pairs of ids).  A table written in Parquet
(``local-features.parquet``, by versions before) is still read, whole, and
is replaced by the mapped format at the next write (any ``imgsearch index``,
``remove`` or ``--refresh-features``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.inputs.local_features import LocalFeatures
from imgsearch.indexer.memory import release_unused_memory

FEATURES_FILE = "local-features.arrow"
LEGACY_FILE = "local-features.parquet"  # written by versions before: read whole, replaced at the next write
BATCH = 2048  # rows per record batch (about 48 MiB)
SCHEMA = pa.schema([("id", pa.int64()), ("sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                    ("points", pa.binary()), ("descriptors", pa.binary()), ("thumb_width", pa.int32()),
                    ("thumb_height", pa.int32()), ("thumb", pa.binary())])


def update_features(root, rows: list[tuple[int, str, LocalFeatures]], removed=()) -> int | None:
    """Add ``rows`` (id, sha256, features) to the folder's table (replacing the rows of their ids), drop those
    of the ids ``removed``; returns the table's size in bytes, None when nothing was written.  A table that
    cannot be read is written anew with ``rows`` (the rest come back with --refresh-features)."""
    root = Path(root)
    gone = {int(i) for i in removed} | {int(i) for i, _, _ in rows}
    present = _present(root)
    if not rows and not (gone and present is not None):
        return None
    try:
        old = read_features(root) if present is not None else None
    except IndexFormatError:
        old = None
    if old is not None and not rows and present == root / FEATURES_FILE and not old.holds_any(gone):
        return None
    kept = old.batches(drop=gone) if old is not None else ()
    return _write(root, kept, _batches(rows))


def write_features(root, rows: Iterable[tuple[int, str, LocalFeatures]]) -> int:
    """Write the table of ``rows`` (id, sha256, features; any iterable, made BATCH rows at a time), replacing
    any; returns its size in bytes."""
    return _write(Path(root), _batches(rows))


def _present(root: Path) -> Path | None:
    for name in (FEATURES_FILE, LEGACY_FILE):
        if (root / name).is_file():
            return root / name
    return None


def _write(root: Path, *parts: Iterable[pa.RecordBatch]) -> int:
    path = root / FEATURES_FILE
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            for part in parts:
                for batch in part:
                    if batch.num_rows:
                        writer.write_batch(batch)
    (root / LEGACY_FILE).unlink(missing_ok=True)
    return path.stat().st_size


def _batches(rows: Iterable[tuple[int, str, LocalFeatures]]):
    part = []
    for row in rows:
        part.append(row)
        if len(part) == BATCH:
            yield _batch(part)
            part = []
    if part:
        yield _batch(part)


def _batch(rows: list[tuple[int, str, LocalFeatures]]) -> pa.RecordBatch:
    columns = {name: [] for name in SCHEMA.names}
    for row_id, sha, f in rows:
        values = (int(row_id), sha, f.size[0], f.size[1], np.ascontiguousarray(f.points, np.float32).tobytes(),
                  np.ascontiguousarray(f.descriptors, np.uint8).tobytes(), f.thumb.shape[1], f.thumb.shape[0],
                  np.ascontiguousarray(f.thumb, np.uint8).tobytes())
        for name, value in zip(SCHEMA.names, values):
            columns[name].append(value)
    return pa.record_batch([pa.array(columns[n], SCHEMA.field(n).type) for n in SCHEMA.names], schema=SCHEMA)


class StoredFeatures(Mapping):
    """{id: (sha256, features)} of a side table: a row's arrays are views of the table's buffers (of the
    memory-mapped file: no copy, nothing decoded) made when asked; the process holds the sorted ids (16 bytes
    an image) and no Python object per row."""

    def __init__(self, table: pa.Table, path: Path, identity: tuple | None = None):
        self._table = table
        self.identity = identity  # the mapped file's (inode, size, mtime): None when not mapped
        self.mapped = identity is not None
        self._ids = table.column("id").to_numpy()
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[self._order]
        self._ints = {n: table.column(n).to_numpy() for n in ("width", "height", "thumb_width", "thumb_height")}
        self._bytes = {n: _binary(table.column(n)) for n in ("sha256", "points", "descriptors", "thumb")}
        self.path = path

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self):
        return iter(self._sorted.tolist())

    def rows(self, ids) -> np.ndarray:
        """(m,) the table row of each of ``ids``, -1 where it has none."""
        ids = np.asarray(ids, np.int64)
        at = np.minimum(np.searchsorted(self._sorted, ids), max(len(self._sorted) - 1, 0))
        found = (self._sorted[at] == ids) if len(self._sorted) else np.zeros(len(ids), bool)
        return np.where(found, self._order[at] if len(self._order) else -1, -1)

    def _row(self, row_id) -> int:
        r = int(self.rows([row_id])[0])
        if r < 0:
            raise KeyError(row_id)
        return r

    def __contains__(self, row_id) -> bool:
        return isinstance(row_id, (int, np.integer)) and bool(self.rows([row_id])[0] >= 0)

    def holds_any(self, ids) -> bool:
        return bool(len(ids)) and bool((self.rows(sorted(ids)) >= 0).any())

    def sha256(self, row_id: int) -> str:
        return bytes(self._slice("sha256", self._row(row_id))).decode()

    def current(self, ids, sha256: pa.Array) -> np.ndarray:
        """The sorted ids among ``ids`` whose row here holds the sha256 given beside it (``sha256``: the
        version's, for each of ``ids``): the images whose stored features are of their current content."""
        ids = np.asarray(ids, np.int64)
        rows = self.rows(ids)
        found = np.flatnonzero(rows >= 0)
        if not len(found):
            return np.empty(0, np.int64)
        mine = self._table.column("sha256").take(pa.array(rows[found]))
        same = pa.compute.equal(mine, pa.array(sha256).take(pa.array(found))).to_numpy(zero_copy_only=False)
        return np.sort(ids[found[same]])

    def __getitem__(self, row_id: int) -> tuple[str, LocalFeatures]:
        r = self._row(row_id)
        points = np.frombuffer(self._slice("points", r), np.float32).reshape(-1, 2)
        descriptors = np.frombuffer(self._slice("descriptors", r), np.uint8).reshape(-1, 32)
        width, height = int(self._ints["thumb_width"][r]), int(self._ints["thumb_height"][r])
        thumb = np.frombuffer(self._slice("thumb", r), np.uint8)
        if len(points) != len(descriptors) or len(thumb) != width * height * 3:
            raise IndexFormatError(f"{self.path}: id {row_id} has {len(points)} keypoints, {len(descriptors)} "
                                   f"descriptors and a {width}x{height} thumbnail of {len(thumb)} bytes: it is "
                                   "damaged; write it again with --refresh-features")
        size = (int(self._ints["width"][r]), int(self._ints["height"][r]))
        return self.sha256(row_id), LocalFeatures(points, descriptors, size, thumb.reshape(height, width, 3))

    def _slice(self, name: str, r: int) -> memoryview:
        starts, parts = self._bytes[name]
        c = int(np.searchsorted(starts, r, side="right")) - 1  # the chunk holding row r
        offsets, data = parts[c]
        r -= int(starts[c])
        return data[offsets[r]:offsets[r + 1]]

    def batches(self, drop=()):
        """The table's rows but those of the ids ``drop``, BATCH rows at a time (never the whole table)."""
        dropped = pa.array(sorted(int(i) for i in drop), pa.int64())
        for batch in self._table.to_batches(BATCH):
            if len(dropped):
                batch = batch.filter(pa.compute.invert(pa.compute.is_in(batch.column(0), dropped)))
            yield pa.RecordBatch.from_arrays(batch.columns, schema=SCHEMA)


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
    """{id: (sha256, features)} of the table, memory-mapped (a Parquet table of versions before: read whole);
    empty when the folder has none."""
    path = _present(Path(root))
    if path is None:
        return StoredFeatures(SCHEMA.empty_table(), Path(root) / FEATURES_FILE)
    if path.name == LEGACY_FILE:
        return StoredFeatures(_read_table(path), path)
    before = _identity(path)
    table = _read_table(path)
    return StoredFeatures(table, path, before if _identity(path) == before else None)


def map_features(path: Path, identity: tuple) -> StoredFeatures:
    """The mapped table at ``path`` when it is still the file of ``identity`` (another process's
    ``StoredFeatures.identity``: not replaced since); IndexFormatError otherwise."""
    stored = read_features(Path(path).parent)
    if stored.path != Path(path) or stored.identity != tuple(identity):
        raise IndexFormatError(f"{path} was replaced while the duplicates were being verified: run them again")
    return stored


def _identity(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_table(path: Path) -> pa.Table:
    try:
        if path.name == LEGACY_FILE:
            table = pq.read_table(path, page_checksum_verification=True)
            release_unused_memory()  # the pages decompressed on the way: as much again, kept
        else:
            table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()  # zero copy: views of the map
            table.validate()
    except (OSError, pa.ArrowException) as exc:
        raise IndexFormatError(f"{path} is unreadable: {exc}; delete it, or write it again with "
                               "'imgsearch index ... --refresh-features'") from exc
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise IndexFormatError(f"{path} has columns {table.schema.names}, not {SCHEMA.names}: delete it, or "
                               "write it again with 'imgsearch index ... --refresh-features'")
    return table
