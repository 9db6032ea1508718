"""The index folder's on-disk format: Parquet shards, manifest, FAISS file.

This module is the only one that knows the layout::

    DIR/manifest.json          what is published: backbone, dim, shards, index file
    DIR/shards/part-NNNNN.parquet   one row per image (SCHEMA below)
    DIR/index-GEN.faiss        FAISS index over the published shards, ids = row ids
    DIR/skipped.log            one line per file that could not be indexed

Every file is written under a temporary name and renamed into place, and the
manifest is replaced last, so a reader sees either the old index or the new
one, never half of one.  Shards that were completed by an interrupted run are
on disk but not yet in the manifest; the next run adopts them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
SKIPPED_LOG = "skipped.log"
METADATA_COLUMNS = ["id", "path", "label", "width", "height", "sha256"]


class IndexFormatError(RuntimeError):
    """The folder is not a usable index; the message says what is wrong."""


def schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


@dataclass
class Row:
    id: int
    path: str
    label: str
    width: int
    height: int
    sha256: str
    embedding: np.ndarray  # (D,) float32


def rows_to_table(rows: Sequence[Row], dim: int) -> pa.Table:
    emb = np.stack([r.embedding for r in rows]).astype(np.float32, copy=False)  # (n, D)
    if emb.shape[1] != dim:
        raise ValueError(f"embedding dimension {emb.shape[1]} != index dimension {dim}")
    columns = {name: [getattr(r, name) for r in rows] for name in METADATA_COLUMNS}
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim)
    return pa.table(columns, schema=schema(dim))


def embeddings_of(table: pa.Table) -> np.ndarray:
    """The embedding column as an (n, D) float32 array, without copying per row."""
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).reshape(-1, dim)  # (n, D)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def library_versions() -> dict:
    import faiss
    import PIL

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "faiss": faiss.__version__,
        "pillow": PIL.__version__,
    }
    from importlib.metadata import PackageNotFoundError, version

    for package in ("tensorflow", "keras", "ai-edge-litert"):
        try:  # from the package metadata: importing TensorFlow just for this costs seconds
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


class EmbeddingStore:
    """Reads and writes one index folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise IndexFormatError(
                f"{self.root} is not an imgsearch index (no {MANIFEST}); create one with "
                f"'imgsearch index SRC --index {self.root}'"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexFormatError(f"{self.manifest_path} is unreadable: {exc}") from exc
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{self.root} has index format {version}, this imgsearch reads {FORMAT_VERSION}; "
                "re-index the images"
            )
        return manifest

    def publish(self, manifest: dict) -> None:
        """Atomically replace the manifest: from now on readers see this version."""
        manifest = dict(manifest, format_version=FORMAT_VERSION, updated=_now())
        _write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())

    # ------------------------------------------------------------ shards
    @property
    def shard_dir(self) -> Path:
        return self.root / SHARD_DIR

    def completed_shards(self) -> list[str]:
        """All fully written shards, published or left by an interrupted run."""
        if not self.shard_dir.is_dir():
            return []
        return sorted(p.name for p in self.shard_dir.glob("part-*.parquet"))

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
        name = f"part-{number:05d}.parquet"
        tmp = self.shard_dir / f".{name}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.shard_dir / name)
        return name

    def recover_shards(self, manifest: dict) -> list[str]:
        """Published shards plus the ones an interrupted ``index`` run completed.

        An unpublished shard numbered below the last published one, or holding
        ids that published shards hold, is a leftover of an interrupted removal
        or sync (a replacement never published, or an original already
        replaced): it is deleted, never served.
        """
        published = list(manifest["shards"])
        last = max(published + [manifest.get("shard_high", "")])
        ids = self.read_table(published, ["id"]).column("id").to_numpy() if published else np.empty(0, np.int64)
        result = list(published)
        for name in self.completed_shards():
            if name in published:
                continue
            shard_ids = pq.read_table(self.shard_dir / name, columns=["id"]).column("id").to_numpy()
            if name <= last or np.isin(shard_ids, ids).any():
                (self.shard_dir / name).unlink(missing_ok=True)
                continue
            ids = np.concatenate([ids, shard_ids])
            result.append(name)
        return result

    def rewrite_without(self, shards: Sequence[str], remove_ids) -> tuple[list[str], list[str]]:
        """New shard list with the rows of ``remove_ids`` left out, and the shards that were replaced.

        Affected shards are rewritten as new shards (the originals stay on disk
        until the caller has published and deletes them).
        """
        import pyarrow.compute as pc

        remove = pa.array(sorted(int(i) for i in remove_ids), pa.int64())
        kept, replaced, rewritten = [], [], []
        for name in shards:
            ids = pq.read_table(self.shard_dir / name, columns=["id"]).column("id")
            if not pc.any(pc.is_in(ids, value_set=remove)).as_py():
                kept.append(name)
                continue
            table = pq.read_table(self.shard_dir / name)
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
        try:
            tables = [pq.read_table(p, columns=columns) for p in self.shard_paths(shards)]
        except (OSError, pa.ArrowException) as exc:
            raise IndexFormatError(f"a shard of {self.root} is unreadable: {exc}") from exc
        return pa.concat_tables(tables)

    def count_rows(self, shards: Sequence[str]) -> int:
        """Rows in ``shards``, from the Parquet footers (no data read)."""
        try:
            return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shard_paths(shards))
        except (OSError, pa.ArrowException) as exc:
            raise IndexFormatError(f"a shard of {self.root} is unreadable: {exc}") from exc

    def read_embedding(self, shards: Sequence[str], row_id: int) -> np.ndarray | None:
        """The stored (D,) embedding of one id, reading only what the filter needs."""
        for path in self.shard_paths(shards):
            t = pq.read_table(path, columns=["embedding"], filters=[("id", "=", row_id)])
            if t.num_rows:
                return embeddings_of(t)[0]
        return None

    def log_skipped(self, lines: Iterable[str]) -> None:
        lines = list(lines)
        if lines:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / SKIPPED_LOG, "a", encoding="utf-8") as f:
                f.writelines(f"{_now()}\t{line}\n" for line in lines)

    # ------------------------------------------------------------ FAISS file
    def write_index(self, index, generation: int, prefix: str = "index") -> str:
        import faiss

        name = f"{prefix}-{generation:06d}.faiss"
        tmp = self.root / f".{name}.{os.getpid()}.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self.root / name)
        return name

    def read_index(self, name: str, mmap: str | None = None):
        """Read a FAISS file.  ``mmap`` leaves data on disk, mapped: "lists" the inverted lists of
        an IVF index, "codes" the vectors of a flat index or of a re-ranking step (FAISS maps one
        or the other, not both)."""
        import faiss

        path = self.root / name
        if not path.is_file():
            raise IndexFormatError(f"{path} is missing: the index is damaged; re-run 'imgsearch index'")
        flags = {None: 0, "lists": faiss.IO_FLAG_MMAP, "codes": faiss.IO_FLAG_MMAP_IFC}[mmap]
        flags |= faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            return faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexFormatError(f"{path} is unreadable: {exc}") from exc

    def remove_temp_files(self) -> None:
        """Delete half-written files a killed run left (they were never renamed into place)."""
        for folder in (self.root, self.shard_dir):
            if folder.is_dir():
                for p in folder.glob(".*.tmp*"):
                    p.unlink(missing_ok=True)

    def remove_stale(self, keep: set[str]) -> None:
        """Delete old index generations and temp files nobody can still be publishing."""
        for pattern in ("index-*.faiss", "trained-*.faiss"):
            for p in self.root.glob(pattern):
                if p.name not in keep:
                    p.unlink(missing_ok=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
