"""The shards' columns (the schema ``store`` writes and reads), by format.

Formats 1-3 hold ``base_schema``; format 4 (issue 17) adds the nullable
FILE_COLUMNS captured at indexing (``indexer/inputs/metadata.py``).  A folder
may mix shards of both: an index of an earlier release extended by this one.
Readers get a FILE_COLUMN an older shard lacks as nulls (``read_shard_columns``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imgsearch.indexer.folder.texts import text_array

# null: unknown (a URI's modification time, an image without EXIF, a shard written before format 4)
FILE_COLUMNS = {"file_size": pa.int64(), "mtime": pa.int64(), "taken": pa.int64(),
                "camera_make": pa.string(), "camera_model": pa.string()}


EMBEDDER_KEY = b"imgsearch.embedder"  # a shard's key-value metadata: the model that made it (folder/evidence.py)


def with_fingerprint(table: pa.Table, fingerprint: dict | None) -> pa.Table:
    """``table`` whose schema metadata records the embedder ``fingerprint`` (one it already records is kept)."""
    metadata = dict(table.schema.metadata or {})
    if fingerprint is None or EMBEDDER_KEY in metadata:
        return table
    metadata[EMBEDDER_KEY] = json.dumps(fingerprint, sort_keys=True).encode()
    return table.replace_schema_metadata(metadata)


def base_schema(dim: int) -> pa.Schema:
    """The shard schema of formats 1-3: their shards stay readable."""
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


def schema(dim: int) -> pa.Schema:
    """The shard schema this release writes: ``base_schema`` plus the nullable FILE_COLUMNS."""
    return pa.schema(list(base_schema(dim)) + [pa.field(name, kind) for name, kind in FILE_COLUMNS.items()])


def is_shard_schema(table_schema: pa.Schema, dim: int) -> bool:
    """Whether a shard's columns are those of a format this release reads (with or without FILE_COLUMNS)."""
    found = table_schema.remove_metadata()
    return found.equals(schema(dim)) or found.equals(base_schema(dim))


def read_shard_columns(read: Callable[..., pa.Table], path: str, columns: Sequence[str]) -> pa.Table:
    """``columns`` of one shard, read with ``read(path, columns=...)``; FILE_COLUMNS it lacks are null."""
    names = set(pq.read_schema(path).names)
    table = read(path, columns=[c for c in columns if c in names])
    for name in columns:
        if name not in names:
            if name not in FILE_COLUMNS:
                raise pa.ArrowInvalid(f"{path} has no column {name!r}")
            kind = FILE_COLUMNS[name]
            table = table.append_column(pa.field(name, kind), pa.nulls(table.num_rows, kind))
    return table.select(list(columns))


@dataclass
class Row:
    id: int
    path: str
    label: str
    width: int
    height: int
    sha256: str
    embedding: np.ndarray  # (D,) float32
    file_size: int | None = None  # FILE_COLUMNS (None is null)
    mtime: int | None = None
    taken: int | None = None
    camera_make: str | None = None
    camera_model: str | None = None


def rows_to_table(rows: Sequence[Row], dim: int) -> pa.Table:
    """Rows of the local engine as a table in the shard schema."""
    emb = np.stack([r.embedding for r in rows]).astype(np.float32, copy=False)  # (n, D)
    if emb.shape[1] != dim:
        raise ValueError(f"embedding dimension {emb.shape[1]} != index dimension {dim}")
    columns = {name: [getattr(r, name) for r in rows] for name in schema(dim).names if name != "embedding"}
    columns["path"], columns["label"] = text_array(columns["path"]), text_array(columns["label"])
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim)
    return pa.table(columns, schema=schema(dim))
