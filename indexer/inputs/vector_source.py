"""Vectors made elsewhere, in a Parquet file: what ``imgsearch index-vectors`` indexes.

Columns (others are ignored):

- ``path`` (string, required): what the vector is of; the index's name for it, as an image's path is;
- ``embedding`` (a list of numbers per row, the same length in every row, required);
- ``label`` (string, optional; absent or null: "");
- ``sha256`` (64 hex digits, optional): the digest of the content, so that copies collapse and a
  changed file keeps its id as with images; absent or null: the digest of the unit vector's float32
  bytes stands in (the same vector twice is one entry).

Vectors are L2-normalised, as the index's own embeddings are.  A bad row (no path, no
vector, another length, NaN or infinity, all zeros, a malformed sha256) is skipped with its
reason and never ends the run.  The file is read a row group at a time: memory does not grow with it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgsearch.indexer.errors import InvalidInputError, quote
from imgsearch.indexer.inputs.sources import ImageFile
from imgsearch.indexer.vectors import l2_normalize, undirected_rows

REQUIRED = ("path", "embedding")
OPTIONAL = ("label", "sha256")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class VectorSourceError(InvalidInputError):
    """The vectors file cannot be indexed as a whole (missing, not Parquet, a required column absent)."""


@dataclass(frozen=True)
class VectorSource:
    """A validated vectors file: where it is, the vectors' dimension, its rows and optional columns."""

    path: str
    dim: int
    rows: int
    columns: tuple[str, ...]  # those of REQUIRED + OPTIONAL it has

    def _file(self) -> pq.ParquetFile:
        return pq.ParquetFile(self.path)

    def listing(self) -> list[ImageFile]:
        """Every row as an ``ImageFile`` (path, label), in the file's order: the run's listing."""
        names = ["path"] + (["label"] if "label" in self.columns else [])
        files: list[ImageFile] = []
        for batch in self._file().iter_batches(columns=names, batch_size=65_536):
            paths = batch.column("path").to_pylist()
            labels = batch.column("label").to_pylist() if "label" in names else [None] * len(paths)
            files.extend(ImageFile(p or "", l or "") for p, l in zip(paths, labels))
        return files

    def batches(self, rows: int = 4096, row_groups: Sequence[int] | None = None, start: int = 0,
                skip: int = 0, limit: int | None = None) -> Iterator["VectorBatch"]:
        """The file's rows in order, ``rows`` at a time (or fewer), each checked and normalised.

        ``row_groups``: only those (consecutive, a Spark task's), whose first row is row ``start`` of the file;
        ``skip``: rows passed over first (unchecked); ``limit``: the most rows yielded after them.
        """
        left = limit
        for batch in self._file().iter_batches(columns=list(self.columns), batch_size=rows, row_groups=row_groups):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                start += batch.num_rows
                continue
            batch, start, skip = batch.slice(skip), start + skip, 0
            if left is not None:
                batch = batch.slice(0, left)
                left -= batch.num_rows
            if batch.num_rows:
                yield _checked(batch, self.dim, start)
            start += batch.num_rows
            if left == 0:
                return


@dataclass
class VectorBatch:
    """Consecutive rows: ``vectors`` (n, D) unit float32 (zeros where ``reasons`` has a reason),
    ``sha256s`` (given or the vector's digest; None for a bad row) and why each bad row is skipped."""

    start: int  # the first row's number in the file
    vectors: np.ndarray
    sha256s: list[str | None]
    reasons: list[str]  # "" for a good row
    paths: list[str]  # as in the file ("" for none)
    labels: list[str]


def open_vector_source(path: str | os.PathLike) -> VectorSource:
    """Check the file's columns and find the vectors' dimension; VectorSourceError says what to change."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VectorSourceError(f"no such vectors file: {quote(path)}")
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise VectorSourceError(f"{quote(path)} is not a Parquet file: {exc}") from None
    schema = file.schema_arrow
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise VectorSourceError(
            f"{quote(path)} has no column {', '.join(missing)}: a vectors file needs 'path' (string) and "
            f"'embedding' (a list of floats per row), optionally 'label' and 'sha256'; it has "
            f"{', '.join(schema.names) or 'no columns'}")
    for name, check, want in (("path", pa.types.is_string, "strings"), ("label", pa.types.is_string, "strings"),
                              ("sha256", pa.types.is_string, "strings of 64 hex digits")):
        if name in schema.names and not (check(schema.field(name).type)
                                         or pa.types.is_large_string(schema.field(name).type)):
            raise VectorSourceError(f"column {name!r} of {quote(path)} must hold {want}, "
                                    f"not {schema.field(name).type}")
    kind = schema.field("embedding").type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or not (
            pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise VectorSourceError(f"column 'embedding' of {quote(path)} must hold a list of numbers per row, "
                                f"not {kind}")
    dim = kind.list_size if pa.types.is_fixed_size_list(kind) else _first_length(file)
    if dim < 1:
        raise VectorSourceError(f"{quote(path)} holds no vector: its 'embedding' column is empty")
    columns = tuple(c for c in REQUIRED + OPTIONAL if c in schema.names)
    return VectorSource(path, dim, file.metadata.num_rows, columns)


def _first_length(file: pq.ParquetFile) -> int:
    """The length of the first non-empty vector: every row must have it."""
    for batch in file.iter_batches(columns=["embedding"], batch_size=4096):
        lengths = pc.drop_null(pc.list_value_length(batch.column("embedding")))
        lengths = lengths.filter(pc.greater(lengths, 0))
        if len(lengths):
            return int(lengths[0].as_py())
    return 0


def vector_digest(vector: np.ndarray) -> str:
    """The stand-in content digest of a (D,) unit float32 vector."""
    return hashlib.sha256(np.ascontiguousarray(vector, np.float32).tobytes()).hexdigest()


def _checked(batch: pa.RecordBatch, dim: int, start: int) -> VectorBatch:
    n = batch.num_rows
    reasons = [""] * n
    paths = batch.column("path").to_pylist()
    given = batch.column("sha256").to_pylist() if "sha256" in batch.schema.names else [None] * n
    column = batch.column("embedding")
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)  # (n,)
    whole = lengths == dim
    vectors = np.zeros((n, dim), np.float64)  # (n, D): float64 keeps what a float64 column holds
    if whole.any():
        rows = column.filter(pa.array(whole))
        vectors[whole] = np.asarray(rows.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(-1, dim)
    finite = np.isfinite(vectors).all(axis=1)
    good = whole & ~undirected_rows(vectors)
    vectors = l2_normalize(np.where(good[:, None], vectors, 0))  # (n, D) float32, scaled before squaring
    sha256s: list[str | None] = [None] * n
    for i in range(n):
        sha = given[i].lower() if isinstance(given[i], str) else None
        if not paths[i]:
            reasons[i] = f"row {start + i}: no path"
        elif lengths[i] != dim:
            reasons[i] = (f"row {start + i}: no vector" if lengths[i] == 0 else
                          f"row {start + i}: the vector has {lengths[i]} numbers, the others {dim}")
        elif not finite[i]:
            reasons[i] = f"row {start + i}: the vector holds NaN or infinity"
        elif not good[i]:
            reasons[i] = f"row {start + i}: the vector is all zeros (it has no direction)"
        elif sha is not None and not _SHA256.fullmatch(sha):
            reasons[i] = f"row {start + i}: sha256 must be 64 hex digits, got {quote(given[i])}"
        else:
            sha256s[i] = sha or vector_digest(vectors[i])
    labels = batch.column("label").to_pylist() if "label" in batch.schema.names else [None] * n
    return VectorBatch(start, vectors, sha256s, reasons, [p or "" for p in paths], [lab or "" for lab in labels])
