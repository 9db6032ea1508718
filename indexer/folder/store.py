"""The index folder's on-disk format: Parquet shards, manifest, FAISS file.

This module is the only one that knows the layout::

    DIR/manifest.json          what is published: backbone, dim, shards, index file
    DIR/shards/part-NNNNN.parquet   one row per image (SCHEMA below)
    DIR/index-GEN.faiss        FAISS index over the published shards, ids = row ids (+ .ivfdata: on disk)
    DIR/skipped.log            one line per file that could not be indexed
    DIR/copies-KEY.parquet     optional: files whose content an indexed image has (``copies``)

Every file is written under a temporary name and renamed into place, and the manifest is replaced last,
so a reader sees either the old index or the new one, never half of one.  Shards that were completed by an
interrupted run are on disk but not yet in the manifest; the next run adopts them.

The manifest records the size and sha256 of every file it publishes (``files``), so damage after publishing
can be told apart from a valid index (``indexer/folder/verify.py``), and shards carry Parquet page checksums,
checked on every read.  Files a new version no longer uses (the previous FAISS file, shards replaced by a
removal, the previous whitening) are kept until the version after it is published, so a server still
answering from the previous version while it opens the new one never finds its files gone.

Paths and labels are stored losslessly, whatever their bytes (``texts``: as themselves when valid UTF-8,
else NUL + the percent-encoded bytes): columns are built by ``texts.text_array`` and read back by
``texts.texts_of``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imgsearch.indexer.atomic import (
    TEMP_MARK,
    atomic_path,
    atomic_write_bytes,
    atomic_write_faiss,
    disk_full_error,
)
from imgsearch.indexer.errors import DamagedIndexError
from imgsearch.indexer.folder.formats import (  # noqa: F401 - readers and tests name the versions here
    FILE_METADATA_FORMAT_VERSION,
    FORMAT_VERSION,
    INT8_FORMAT_VERSION,
    READABLE_FORMATS,
    RESAMPLE_FORMAT_VERSION,
)
from imgsearch.indexer.folder.formats import format_version as _format_version
from imgsearch.indexer.folder.ondisk_lists import LISTS_SUFFIX, read_on_disk
from imgsearch.indexer.folder.shard_columns import (  # noqa: F401 - writers import the columns, Row and rows_to_table here
    FILE_COLUMNS,
    Row,
    read_shard_columns,
    rows_to_table,
    schema,
    with_fingerprint,
)
from imgsearch.indexer.folder.texts import log_bytes
from imgsearch.indexer.folder.validate import ManifestShapeError, check_manifest_shape

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
SKIPPED_LOG = "skipped.log"
COPIES_PREFIX = "copies"  # copies-KEY.parquet: the exact copies table (indexer/folder/copies.py)
METADATA_COLUMNS = ["id", "path", "label", "width", "height", "sha256"]
ROW_GROUP_ROWS = 256  # rows per Parquet row group in a shard: the unit a lookup by id reads


class IndexFormatError(DamagedIndexError, RuntimeError):
    """The folder is not a usable index; the message says what is wrong."""


class DamagedShardError(IndexFormatError):
    """A published shard that cannot be read (bytes garbled, cut short, gone): ``shard`` names it."""

    def __init__(self, message: str, shard: str = ""):
        super().__init__(message)
        self.shard = shard


def shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"  # names sort in the order shards were written


def write_shard_file(path: str | os.PathLike, table: pa.Table) -> None:
    """A table in the shard schema written to ``path`` atomically: every shard, the store's or an executor's."""
    # page checksums: a damaged page fails to read, never misreads.  Small row groups, plain (not dictionary)
    # encoded embeddings: a lookup by id reads 256 rows, not the whole shard (6 ms, not 34-47, on 1,897 rows).
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True, row_group_size=ROW_GROUP_ROWS,
                       use_dictionary=["label"])


def embeddings_of(table: pa.Table) -> np.ndarray:
    """The embedding column as an (n, D) float32 array, without copying per row."""
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).reshape(-1, dim)  # (n, D)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


_DAMAGED = ("the manifest cannot be rebuilt in place: restore the folder from a backup, or index the images "
            "again into a new folder")


class EmbeddingStore:
    """Reads and writes one index folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.fingerprint: dict | None = None  # the embedder a writer's shards record (folder/evidence.py)
        self.damaged: dict[str, str] = {}  # shard -> why a read of it failed, since this store was made

    # ------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict:
        """The published manifest, checked for the type of every field readers rely on."""
        try:
            manifest = json.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise IndexFormatError(f"{self.root} is not an imgsearch index (no {MANIFEST}); create one with "
                                   f"'imgsearch index SRC --index {self.root}'") from None
        except IsADirectoryError:
            raise IndexFormatError(f"{self.manifest_path} is a folder, not a manifest; {_DAMAGED}") from None
        except OSError as exc:
            raise IndexFormatError(f"{self.manifest_path} is unreadable: {exc.strerror or exc}") from None
        except ValueError as exc:  # not UTF-8, not JSON: a truncated or overwritten file
            raise IndexFormatError(f"{self.manifest_path} is unreadable: not valid JSON ({str(exc)[:120]}); "
                                   f"{_DAMAGED}") from None
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if isinstance(manifest, dict) and version not in READABLE_FORMATS:
            raise IndexFormatError(f"{self.root} has index format {str(version)[:20]}, this imgsearch reads "
                                   f"{' and '.join(map(str, READABLE_FORMATS))}; re-index the images")
        try:
            check_manifest_shape(manifest)
        except ManifestShapeError as exc:
            raise IndexFormatError(f"{self.manifest_path} is damaged: {exc}; {_DAMAGED}") from None
        return manifest

    def manifest_signature(self) -> tuple | None:
        """Changes whenever the manifest is replaced (one stat): how a server notices a new version."""
        try:
            st = os.stat(self.manifest_path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def publish(self, manifest: dict, *, retired: Sequence[str] = ()) -> dict:
        """Atomically replace the manifest: from now on readers see this version.

        Records the size and sha256 of every file the version uses, then deletes
        what the version before the previous one used and nobody needs any more.
        ``retired``: shards this version replaces (they stay on disk for one version).
        Returns the manifest as published.
        """
        try:
            previous = self.read_manifest() if self.exists() else {}
        except IndexFormatError:
            previous = {}
        manifest = dict(manifest, format_version=_format_version(manifest), updated=_now(),
                        retired_shards=sorted(set(retired) - set(manifest["shards"])))
        manifest["files"] = self._file_records(manifest, previous.get("files") or {})
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
        self._remove_superseded(manifest, previous)
        return manifest

    def published_files(self, manifest: dict) -> list[str]:
        """Paths, relative to the folder, of every file a version uses."""
        files = [f"{SHARD_DIR}/{name}" for name in manifest["shards"]]
        if manifest.get("index_file"):
            files.append(manifest["index_file"])
        if (manifest.get("whitening") or {}).get("file"):
            files.append(manifest["whitening"]["file"])
        # the trained, empty index updates start from; an on-disk index's inverted lists (ondisk_lists)
        files += [(manifest.get("ann") or {}).get(f) for f in ("trained_file", "lists_file")]
        if (manifest.get("copies") or {}).get("file"):
            files.append(manifest["copies"]["file"])
        return [f for f in files if f]

    def _file_records(self, manifest: dict, known: dict) -> dict:
        """{relative path: {"size", "sha256"}}; shards never change once written, so their
        records carry over from the previous version and only new files are hashed."""
        records = {}
        for rel in self.published_files(manifest):
            path = self.root / rel
            size = path.stat().st_size
            old = known.get(rel)
            if rel.startswith(f"{SHARD_DIR}/") and old and old.get("size") == size:
                records[rel] = old
            else:
                records[rel] = {"size": size, "sha256": file_sha256(path)}
        return records

    def _remove_superseded(self, manifest: dict, previous: dict) -> None:
        """Delete files neither this version nor the previous one uses."""
        keep = set(self.published_files(manifest)) | set(self.published_files(previous) if previous else [])
        for p in [*self.root.glob("index-*.faiss"), *self.root.glob(f"index-*{LISTS_SUFFIX}"),
                  *self.root.glob("trained-*.faiss"),
                  *self.root.glob("whitening-*.npz"), *self.root.glob(f"{COPIES_PREFIX}-*.parquet")]:
            if p.name not in keep:
                p.unlink(missing_ok=True)
        # shards the previous version retired: no served version uses them any more
        self.delete_shards(n for n in previous.get("retired_shards", []) if f"{SHARD_DIR}/{n}" not in keep)

    # ------------------------------------------------------------ shards
    @property
    def shard_dir(self) -> Path:
        return self.root / SHARD_DIR

    def completed_shards(self) -> list[str]:
        """All fully written shards, published or left by an interrupted run."""
        return sorted(p.name for p in self.shard_dir.glob("part-*.parquet")) if self.shard_dir.is_dir() else []

    def shard_paths(self, names: Iterable[str]) -> list[str]:
        return [str(self.shard_dir / n) for n in names]

    def write_shard(self, rows: Sequence[Row], dim: int) -> str:
        """Write rows as the next shard, atomically; returns the shard's name."""
        return self.write_table(rows_to_table(rows, dim))

    def write_table(self, table: pa.Table) -> str:
        """Write a table in the shard schema as the next shard, atomically; returns its name."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        existing = self.completed_shards()
        number = int(existing[-1][5:10]) + 1 if existing else 0
        name = shard_name(number)
        write_shard_file(self.shard_dir / name, with_fingerprint(table, self.fingerprint))
        return name

    def recover_shards(self, manifest: dict) -> list[str]:
        """Published shards plus the ones an interrupted ``index`` run completed.

        An unpublished shard numbered below the last published one, or holding
        ids that published shards hold, is a leftover of an interrupted removal
        or sync (a replacement never published, or an original already
        replaced): it is deleted, never served.  Shards the published version
        retired are left alone: the version before it may still be served.
        """
        published = list(manifest["shards"])
        retired = set(manifest.get("retired_shards", []))
        last = max(published + [manifest.get("shard_high", "")])
        ids = self.read_table(published, ["id"]).column("id").to_numpy() if published else np.empty(0, np.int64)
        result = list(published)
        for name in self.completed_shards():
            if name in published or name in retired:
                continue
            shard_ids = _read_parquet(self.shard_dir / name, columns=["id"]).column("id").to_numpy()
            if name <= last or np.isin(shard_ids, ids).any():
                (self.shard_dir / name).unlink(missing_ok=True)
                continue
            ids = np.concatenate([ids, shard_ids])
            result.append(name)
        return result

    def rewrite_without(self, shards: Sequence[str], remove_ids) -> tuple[list[str], list[str]]:
        """New shard list with the rows of ``remove_ids`` left out, and the shards that were replaced (rewritten
        as new shards; the originals stay on disk until the caller has published and deletes them)."""
        import pyarrow.compute as pc

        remove = pa.array(sorted(int(i) for i in remove_ids), pa.int64())
        kept, replaced, rewritten = [], [], []
        for name in shards:
            ids = _read_parquet(self.shard_dir / name, columns=["id"]).column("id")
            if not pc.any(pc.is_in(ids, value_set=remove)).as_py():
                kept.append(name)
                continue
            table = _read_parquet(self.shard_dir / name)
            table = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=remove)))
            replaced.append(name)
            if table.num_rows:
                rewritten.append(self.write_table(table))
        return kept + rewritten, replaced

    def delete_shards(self, names: Iterable[str]) -> None:
        for name in names:
            (self.shard_dir / name).unlink(missing_ok=True)

    def read_table(self, shards: Sequence[str], columns: Sequence[str] | None = None) -> pa.Table:
        if not shards:
            return schema(1).empty_table().select(columns or schema(1).names)
        tables = self._each_shard(shards, lambda p: _read_parquet(p, columns=columns))
        return pa.concat_tables(tables, promote_options="default")  # shards of formats 1-3 lack FILE_COLUMNS

    def read_columns(self, shards: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """``columns`` of every row, in shard order; FILE_COLUMNS a shard of formats 1-3 lacks are null."""
        tables = self._each_shard(shards, lambda p: read_shard_columns(_read_parquet, p, columns))
        return pa.concat_tables(tables) if tables else schema(1).empty_table().select(list(columns))

    def shard_rows(self, shards: Sequence[str]) -> list[int]:
        """Rows of each shard, from the Parquet footers (no data read)."""
        return self._each_shard(shards, lambda p: pq.ParquetFile(p).metadata.num_rows)

    def _each_shard(self, shards: Sequence[str], read) -> list:
        """``read(path)`` of each of ``shards``; DamagedShardError naming the one that fails."""
        found = []
        for name in shards:
            try:
                found.append(read(str(self.shard_dir / name)))
            except (OSError, pa.ArrowException) as exc:
                raise self.unreadable_shard(exc, name) from exc
        return found

    def open_shard(self, name: str, read_dictionary: Sequence[str] = ()) -> pq.ParquetFile:
        """One shard, open for reading column by column and row group by row group (page checksums
        checked; ``read_dictionary``: string columns read as dictionary arrays).  The caller turns a
        read's OSError or ArrowException into IndexFormatError (``unreadable_shard``)."""
        path = self.shard_dir / name
        try:
            return pq.ParquetFile(path, read_dictionary=list(read_dictionary) or None,
                                  page_checksum_verification=True)
        except (OSError, pa.ArrowException) as exc:
            raise self.unreadable_shard(exc, name) from exc

    def unreadable_shard(self, exc: Exception, name: str) -> DamagedShardError:
        """The error for a failed read of shard ``name``, remembered in ``damaged`` (a server's health)."""
        self.damaged.setdefault(name, str(exc)[:300])
        return DamagedShardError(f"shard {name} of {self.root} is unreadable: {exc}; check the index with "
                                 f"'imgsearch verify --index {self.root}'", name)

    def read_embedding(self, shards: Sequence[str], row_id: int) -> np.ndarray | None:
        """The stored (D,) embedding of one id, reading only what the filter needs."""
        for name in shards:
            try:
                t = _read_parquet(self.shard_dir / name, columns=["embedding"], filters=[("id", "=", row_id)])
            except (OSError, pa.ArrowException) as exc:
                raise self.unreadable_shard(exc, name) from exc
            if t.num_rows:
                return embeddings_of(t)[0]
        return None

    def log_skipped(self, lines: Iterable[str]) -> None:
        """Append to skipped.log; paths as their bytes on disk (``texts.log_bytes``)."""
        lines = list(lines)
        if lines:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                with open(self.root / SKIPPED_LOG, "ab") as f:
                    f.writelines(log_bytes(f"{_now()}\t{line}\n") for line in lines)
            except OSError as exc:  # a log line is not worth a traceback: a full disk says so
                raise disk_full_error(exc, self.root / SKIPPED_LOG) or exc

    # ------------------------------------------------------------ FAISS file
    def write_index(self, index, generation: int, prefix: str = "index") -> str:
        name = f"{prefix}-{generation:06d}.faiss"
        atomic_write_faiss(self.root / name, index)
        return name

    def read_index(self, name: str, mmap: str | None = None, lists_file: str | None = None):
        """Read a FAISS file.  ``mmap`` leaves data on disk, mapped: "lists" the inverted lists of
        an IVF index, "codes" the vectors of a flat index or of a re-ranking step (FAISS maps one
        or the other, not both).  ``lists_file``: an on-disk index's lists, mapped read-only."""
        import faiss

        path = self.root / name
        if not path.is_file():
            raise IndexFormatError(f"{path} is missing: the index is damaged; re-run 'imgsearch index'")
        flags = {None: 0, "lists": faiss.IO_FLAG_MMAP, "codes": faiss.IO_FLAG_MMAP_IFC}[mmap]
        flags |= faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            if lists_file:
                return read_on_disk(path, self.root / lists_file)
            return faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexFormatError(f"{path} is unreadable: {exc}") from exc

    def remove_temp_files(self) -> None:
        """Delete half-written files a killed run left (they were never renamed into place)."""
        for folder in (self.root, self.shard_dir):
            if folder.is_dir():
                for p in folder.glob(f".*{TEMP_MARK}*"):  # indexer.atomic's temporary names
                    p.unlink(missing_ok=True)


def _read_parquet(path, **kwargs) -> pa.Table:
    """Read a shard, checking the page checksums (shards written before they existed have none)."""
    return pq.read_table(path, page_checksum_verification=True, **kwargs)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
