"""Which row an id is, and the path and label of rows: a version's metadata, held columnar.

A serving engine must not hold Python objects per image: at ten million a
dict from id to row and lists of paths and labels cost several GB and a
minute to build.  So a version's ``Catalog`` holds, per row, only

- its id (int64, the engine's row order), plus an int32 order (argsort) when
  the ids are not increasing (after a rebuild mixed shards, say); increasing
  ids, the usual case (ids are handed out in order, compaction keeps it), are
  searched directly.  id -> row is ``np.searchsorted``: ~1 us per id, and
  vectorised for many ids at once;
- its label as a code into the version's distinct labels (uint8 / uint16 /
  int32 as their number needs; labels are few: classes, folders);

about 9-13 bytes per row.  Paths are not held: the rows a reply needs are read
from their shard's Parquet row group (``ROW_GROUP_ROWS`` rows, the ``path``
column only), the last ``CACHED_GROUPS`` groups read kept, so the paths of a
page of results cost one small read per group the first time and nothing
after.  Texts come back through ``indexer/folder/texts.py`` like every
reader's: paths of any bytes stay the ones ``open()`` takes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import decode_text, decode_texts, encode_text

CACHED_GROUPS = 256  # row groups whose paths are kept (256 rows each: ~4 MB of paths at most)
OPEN_SHARDS = 64  # shard files kept open for path reads, their footers parsed once (4096-row shards: ~100 KB each)
OPEN_FOOTER_BYTES = 16 << 20  # ... and no more than this much footer among them (a 250k-row shard's is ~1 MB)
READ_THREADS = 4  # shards read at once on open
_INT64 = np.iinfo(np.int64)


def _code_type(labels: int) -> np.dtype:
    """The smallest integer type numbering ``labels`` distinct labels."""
    return np.dtype(np.uint8 if labels <= 1 << 8 else np.uint16 if labels <= 1 << 16 else np.int32)


class Catalog:
    """The ids, labels and (lazily) paths of one version's rows, in the shards' order.

    ``Catalog.read(store, shards)`` reads the ``id`` and ``label`` columns of
    every shard (labels as dictionaries, so no string per row is made) and the
    row-group layout from the footers.  Paths are read when a reply needs them:
    a damaged page of them then fails its checksum and the query is refused
    (``IndexFormatError``), as for a damaged embedding; it never gives a wrong
    path.  Damaged ids or labels are refused on open.
    """

    def __init__(self, store: EmbeddingStore, shards: Sequence[str], ids: np.ndarray, codes: np.ndarray,
                 labels: pa.Array, group_starts: np.ndarray, group_shard: np.ndarray, group_index: np.ndarray):
        self.store = store
        self.shards = list(shards)
        self.ids = ids  # (n,) int64, row order
        increasing = len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))
        # (n,) rows in id order, None when the ids are increasing already
        self._order = None if increasing else np.argsort(ids, kind="stable").astype(
            np.int32 if len(ids) < 1 << 31 else np.int64)
        self._sorted = ids if increasing else ids[self._order]  # a view when increasing: no copy
        self._codes = codes  # (n,) label codes into self._labels
        self._labels = labels  # (L,) the distinct labels as stored (encoded texts)
        self._label_texts: dict[int, str] = {}  # decoded labels, by code (few)
        self._group_starts = group_starts  # (G + 1,) first row of each row group, then n
        self._group_shard = group_shard  # (G,) which shard holds a row group (int32)
        self._group_index = group_index  # (G,) the row group's number inside its shard (int32)
        self._shard_ends = None  # (shards,) rows up to the end of each shard, made on first use
        self._lock = threading.Lock()
        self._paths: OrderedDict[int, pa.Array] = OrderedDict()  # row group -> its stored paths, LRU
        self._files: OrderedDict[int, object] = OrderedDict()  # shard -> open ParquetFile, LRU
        self._footer_bytes = 0  # serialized footers of the files open

    @classmethod
    def read(cls, store: EmbeddingStore, shards: Sequence[str]) -> "Catalog":
        """The catalog of ``shards``: IndexFormatError if one is unreadable.  Shards are read by a few
        threads (Parquet decodes without the GIL): at ten million rows in 2,600 shards opening is bound
        by reading them."""
        ids, codes, starts, group_shard, group_index = [], [], [0], [], []
        code_of: dict[str, int] = {}  # stored label -> code
        with ThreadPoolExecutor(max(1, min(READ_THREADS, len(shards)))) as pool:
            for s, (shard_ids, words, local, sizes) in enumerate(pool.map(lambda n: _read_shard(store, n), shards)):
                ids.append(shard_ids)
                lut = np.array([code_of.setdefault(t, len(code_of)) for t in words] + [0], np.int32)
                codes.append(lut[local])  # local -1, a null label (no writer stores one): lut[-1]
                starts.extend((np.cumsum(sizes) + starts[-1]).tolist())
                group_shard.extend([s] * len(sizes))
                group_index.extend(range(len(sizes)))
        labels = pa.array(list(code_of) or [""], pa.string())
        return cls(store, shards,
                   np.concatenate(ids).astype(np.int64, copy=False) if ids else np.zeros(0, np.int64),
                   np.concatenate(codes).astype(_code_type(len(labels))) if codes else np.zeros(0, np.uint8),
                   labels, np.array(starts, np.int64), np.array(group_shard, np.int32),
                   np.array(group_index, np.int32))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Bytes this catalog holds whatever is queried (the path cache aside): what serving costs per image."""
        arrays = [self.ids, self._codes, self._group_starts, self._group_shard, self._group_index]
        if self._order is not None:
            arrays += [self._order, self._sorted]
        return sum(a.nbytes for a in arrays) + self._labels.nbytes

    # ------------------------------------------------------------ id -> row
    def rows(self, ids) -> np.ndarray:
        """The rows of ``ids`` (any integers), -1 for an id not in this version: (m,) int64."""
        want = np.asarray(ids)
        if want.dtype.kind not in "iu":  # e.g. Python ints beyond int64: an object array
            want = np.array([int(i) if _INT64.min <= int(i) <= _INT64.max else -1 for i in want.ravel()],
                            np.int64)
        want = want.ravel().astype(np.int64) if want.dtype != np.uint64 else _clip_uint64(want.ravel())
        at = np.searchsorted(self._sorted, want)
        found = at < len(self._sorted)
        found[found] = self._sorted[at[found]] == want[found]
        rows = np.where(found, at, -1)
        if self._order is not None:
            rows[found] = self._order[at[found]]
        return rows

    def row(self, row_id) -> int | None:
        """The row of one id, None if it is not in this version."""
        row_id = int(row_id)
        if not _INT64.min <= row_id <= _INT64.max:
            return None
        at = int(np.searchsorted(self._sorted, row_id))
        if at == len(self._sorted) or self._sorted[at] != row_id:
            return None
        return at if self._order is None else int(self._order[at])

    def shard_of(self, row: int) -> str:
        """The shard holding a row."""
        if self._shard_ends is None:
            last_group = np.r_[np.flatnonzero(np.diff(self._group_shard)), len(self._group_shard) - 1]
            ends = np.zeros(len(self.shards), np.int64)  # a shard of no rows ends where the one before does
            ends[self._group_shard[last_group]] = self._group_starts[last_group + 1]
            self._shard_ends = np.maximum.accumulate(ends)
        return self.shards[int(np.searchsorted(self._shard_ends, row, side="right"))]

    # ------------------------------------------------------------ row -> label, path
    def label(self, row: int) -> str:
        return self.label_of_code(int(self._codes[row]))

    def labels(self, rows: Iterable[int]) -> list[str]:
        return [self.label(int(r)) for r in rows]

    def distinct_labels(self) -> list[str]:
        """Every label some row has, sorted (as the file system names them)."""
        used = np.flatnonzero(np.bincount(self._codes, minlength=len(self._labels)))
        return sorted(self.label_of_code(int(c)) for c in used)

    def label_of_code(self, code: int) -> str:
        text = self._label_texts.get(code)
        if text is None:
            text = self._label_texts[code] = decode_text(self._labels[code].as_py())
        return text

    def path(self, row: int) -> str:
        return self.paths([row])[0]

    def paths(self, rows) -> list[str]:
        """The paths of ``rows``, in that order: each row group they fall in is read once (or found cached)."""
        rows = np.asarray(rows, np.int64).ravel()
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1  # (m,)
        stored = [None] * len(rows)
        for g in np.unique(groups):
            column = self._group_paths(int(g))
            for i in np.flatnonzero(groups == g):
                stored[i] = column[int(rows[i] - self._group_starts[g])].as_py()
        return decode_texts(stored)

    def file_record(self, row: int) -> tuple[str, int | None, int | None]:
        """(sha256, file_size, mtime) stored for ``row``: what its file held when it was indexed (size and
        mtime None where unknown: a shard of formats 1-3, a URI's time).  One row group's columns, read now."""
        g = int(np.searchsorted(self._group_starts, row, side="right") - 1)
        table = self._group_columns(g, ("sha256", "file_size", "mtime"))
        at = row - int(self._group_starts[g])
        sha256, size, mtime = (table.column(c)[at].as_py() if c in table.column_names else None
                               for c in ("sha256", "file_size", "mtime"))
        return sha256, size, mtime

    def sizes(self, rows) -> list[tuple[int | None, int | None, int | None]]:
        """(width, height, file_size) stored for each of ``rows``, in that order (None where a shard of an older
        format has no such column); each row group they fall in is read once, three small columns."""
        rows = np.asarray(rows, np.int64).ravel()
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        found: list = [(None, None, None)] * len(rows)
        for g in np.unique(groups):
            table = self._group_columns(int(g), ("width", "height", "file_size"))
            values = {c: table.column(c).to_pylist() for c in table.column_names}
            for i in np.flatnonzero(groups == g):
                at = int(rows[i] - self._group_starts[g])
                found[i] = tuple(values[c][at] if c in values else None for c in ("width", "height", "file_size"))
        return found

    def _group_columns(self, g: int, names) -> pa.Table:
        """Row group ``g``'s columns among ``names`` that its shard has (an older format lacks some), read now."""
        shard = int(self._group_shard[g])
        with self._lock:
            try:
                f = self._file(shard)
                columns = [c for c in names if c in f.schema_arrow.names]
                return f.read_row_group(int(self._group_index[g]), columns=columns, use_threads=False)
            except (OSError, pa.ArrowException) as exc:
                raise self.store.unreadable_shard(exc, self.shards[shard]) from exc

    def ids_of_path(self, path: str) -> list[int]:
        """The ids indexed under ``path`` exactly as stored (one, unless a list named the file twice); reads
        every row group's paths once, in order: for a command's argument, not a request's loop."""
        import pyarrow.compute as pc

        stored = encode_text(path)
        found = []
        for g in range(len(self._group_shard)):  # G row groups (_group_starts has G + 1 entries)
            hits = np.flatnonzero(pc.equal(self._group_paths(g), stored).to_numpy(zero_copy_only=False))
            found += [int(self.ids[self._group_starts[g] + i]) for i in hits]
        return found

    def _group_paths(self, g: int) -> pa.Array:
        """The stored ``path`` column of row group ``g`` (LRU cached)."""
        with self._lock:
            found = self._paths.get(g)
            if found is not None:
                self._paths.move_to_end(g)
                return found
            shard = int(self._group_shard[g])
            try:
                # one thread: a pool's start-up costs more than decoding 256 paths
                column = self._file(shard).read_row_group(int(self._group_index[g]), columns=["path"],
                                                          use_threads=False)
            except (OSError, pa.ArrowException) as exc:
                raise self.store.unreadable_shard(exc, self.shards[shard]) from exc
            found = self._paths[g] = column.column("path").combine_chunks()
            if len(self._paths) > CACHED_GROUPS:
                self._paths.popitem(last=False)
            return found

    def _file(self, shard: int):
        """Shard ``shard`` open (LRU of OPEN_SHARDS): its footer is parsed once, not per read.  Called locked."""
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = self.store.open_shard(self.shards[shard])
            self._footer_bytes += f.metadata.serialized_size
            while len(self._files) > 1 and (len(self._files) > OPEN_SHARDS
                                            or self._footer_bytes > OPEN_FOOTER_BYTES):
                self._footer_bytes -= self._files.popitem(last=False)[1].metadata.serialized_size
        self._files.move_to_end(shard)
        return f

    def close(self) -> None:
        with self._lock:
            self._files.clear()
            self._paths.clear()
            self._footer_bytes = 0


def _read_shard(store: EmbeddingStore, name: str) -> tuple[np.ndarray, list[str], np.ndarray, list[int]]:
    """One shard's ids, distinct stored labels, each row's index into them, and its row groups' sizes."""
    f = store.open_shard(name, read_dictionary=["label"])
    try:
        # not the paths: reading them only to check their pages took a quarter of opening (10M rows: 2,600
        # shards, 0.8 of 2.9 ms each); a damaged one is found when it is read for a reply, and refused
        table = f.read(columns=["id", "label"], use_threads=False)
        sizes = [f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)]
    except (OSError, pa.ArrowException) as exc:
        raise store.unreadable_shard(exc, name) from exc
    label = table.unify_dictionaries().column("label").combine_chunks()  # one dictionary for the shard
    if not isinstance(label, pa.DictionaryArray):  # no rows: no chunk to unify
        return table.column("id").to_numpy(), [], np.zeros(0, np.int32), sizes
    local = label.indices.fill_null(-1).to_numpy().astype(np.int32, copy=False)
    return table.column("id").to_numpy(), label.dictionary.to_pylist(), local, sizes


def _clip_uint64(ids: np.ndarray) -> np.ndarray:
    """uint64 ids as int64, those beyond int64 as -1 (no row has them; ids are >= 0)."""
    return np.where(ids > np.uint64(_INT64.max), -1, ids.astype(np.int64))

