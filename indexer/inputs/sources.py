"""Finding the image files to index and the label each one carries.

A source is a folder (walked recursively), an image file, or a list of
images: a text file (``.txt``/``.lst``, one path per line), a CSV or a
Parquet file with a ``path`` column and optionally a ``label`` column.
Relative paths in a list are relative to the list's folder.  Sources and
list entries may be file-system URIs (``hdfs://``, ``s3://``, ``file://``...,
see ``filesystems``); their images keep their URIs as paths.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from imgsearch.indexer.errors import InvalidInputError, NotFoundError
from imgsearch.indexer.inputs import filesystems
from imgsearch.indexer.inputs.images import IMAGE_EXTENSIONS
from imgsearch.indexer.inputs.outputs import OutputFilter

LIST_SUFFIXES = frozenset({".txt", ".lst", ".csv", ".parquet"})


class SourceNotFoundError(NotFoundError, FileNotFoundError):
    """A source (folder, image file or list) named for indexing does not exist: check the path."""


@dataclass(frozen=True)
class ImageFile:
    path: str  # absolute path, as the user's file system names it, or a URI
    label: str  # parent folder relative to the source root ("" at the root), or the list's label


def iter_image_files(sources: Iterable[str | os.PathLike], outputs: OutputFilter | None = None) -> Iterator[ImageFile]:
    """Yield the images of every source once each, in a stable order (folders sorted).

    Inside folders only known image extensions are taken; a file named
    explicitly, or in a list, is taken whatever its extension (the decoder decides).
    What imgsearch wrote (index folders, reports: ``outputs.py``) is never yielded: ``outputs`` collects
    what was left out, and why, in its ``left_out``.
    """
    outputs = outputs if outputs is not None else OutputFilter()
    seen: set[str] = set()
    for source in sources:
        walked = not filesystems.is_uri(source) and os.path.isdir(source)  # checked folder by folder by _walk
        for item in _images_of(source, outputs):
            if item.path not in seen and (walked or filesystems.is_uri(item.path)
                                          or outputs.keep(item.path, outputs.file_reason(item.path))):
                seen.add(item.path)
                yield item


def _images_of(source: str | os.PathLike, outputs: OutputFilter) -> Iterator[ImageFile]:
    """The images of one source; FileNotFoundError when there is no such file or folder."""
    if filesystems.is_uri(source):
        return _from_uri(str(source).rstrip("/"))
    root = Path(os.path.abspath(source))
    if root.is_dir():
        return _walk(root, outputs)
    if root.suffix.lower() in LIST_SUFFIXES and root.is_file():
        return _read_list(root)
    if root.exists() or root.is_symlink():
        return iter([ImageFile(str(root), root.parent.name)])
    raise SourceNotFoundError(f"no such file or folder: {source}")


def _walk(root: Path, outputs: OutputFilter) -> Iterator[ImageFile]:
    seen: set[tuple[int, int]] = set()  # (device, inode) of the folders walked
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: a loop, or a second way in
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        if not outputs.keep(dirpath, outputs.folder_reason(dirpath)):  # an index folder: none of it
            dirnames.clear()
            continue
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        label = "" if rel == "." else Path(rel).as_posix()
        written = outputs.written_in(dirpath)  # files a command wrote here (a report's plots)
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = os.path.join(dirpath, name)
                if outputs.keep(path, written.get(os.fsencode(name))):
                    yield ImageFile(path, label)


def _walk_order(rel: str) -> tuple:
    """Sort key that lists relative paths as ``_walk`` does: a folder's files (sorted), then its sub-folders."""
    parts = rel.split("/")
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)


def _from_uri(source: str) -> Iterator[ImageFile]:
    kind = filesystems.kind(source)
    if kind == "dir":
        rels = [r for r in filesystems.walk_files(source) if posixpath.splitext(r)[1].lower() in IMAGE_EXTENSIONS]
        for rel in sorted(rels, key=_walk_order):
            yield ImageFile(f"{source}/{rel}", posixpath.dirname(rel))
    elif kind == "file" and posixpath.splitext(source)[1].lower() in LIST_SUFFIXES:
        yield from _read_list(source)
    elif kind == "file":
        yield ImageFile(source, posixpath.basename(posixpath.dirname(source)))
    else:
        raise SourceNotFoundError(f"no such file or folder: {source}")


def _without_line_ending(parent, line: str, remote: bool) -> str:
    """``line`` without the ``\r`` of a ``\r\n`` ending, unless the ``\r`` is the last character of a local
    file's name: a name ending in ``\r`` whose twin without it does not exist (Windows lists keep working)."""
    if not line.endswith("\r"):
        return line
    if not remote and not filesystems.is_uri(line):
        full = os.path.join(parent, line)
        if os.path.lexists(full) and not os.path.lexists(full[:-1]):
            return line
    return line[:-1]


def _entry(base: Path | str, path: str, label: str | None) -> ImageFile:
    """One list entry: ``path`` exactly as written (absolute, a URI, or relative to the list's folder)."""
    if filesystems.is_uri(path):
        full = path
    elif filesystems.is_uri(str(base)):
        full = filesystems.join_relative(str(base), path)
    else:
        full = os.path.abspath(os.path.join(base, path))
    parent = posixpath.basename(posixpath.dirname(full)) if filesystems.is_uri(full) else Path(full).parent.name
    return ImageFile(full, label if label else parent)


class ListFileError(InvalidInputError):
    """A list of images cannot be read; the message names the list file, and the line or row."""


def _list_text(path: Path | str, remote: bool) -> str:
    """A text or CSV list's contents: UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8").

    Bytes that are not UTF-8 are kept as the file system keeps them (``os.fsdecode``'s surrogate escapes): a
    name that is not UTF-8 is data; ``_checked_name`` refuses one that names no file.
    """
    data = filesystems.read_bytes(str(path)) if remote else Path(path).read_bytes()
    return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")


def _checked_name(list_path, line: int, name: str, entry: ImageFile, remote: bool) -> ImageFile:
    """``entry`` if ``name`` is UTF-8 or, not being UTF-8, names a file that exists; else ListFileError."""
    try:
        name.encode("utf-8")
        return entry
    except UnicodeEncodeError as exc:
        if not remote and not filesystems.is_uri(entry.path) and os.path.lexists(entry.path):
            return entry  # a file name that is not UTF-8, written as its bytes
        byte = os.fsencode(name[exc.start])[0]
        raise ListFileError(f"{list_path}, line {line}: not UTF-8 text (byte 0x{byte:02x}) and no file has "
                            "that name; save the list as UTF-8") from None


def _read_list(path: Path | str) -> Iterator[ImageFile]:
    """Entries of a list file, local or at a URI (read whole: lists are small next to their images).

    A text list's line is a path exactly as written but its line ending (``\\n`` or ``\\r\\n``; a name that
    ends in ``\\r`` is kept whole when only it exists): spaces,
    tabs, quotes and bytes that are not UTF-8 are part of the name.  A line that is empty or only whitespace
    is skipped, as is one whose first character is ``#`` (a comment; list ``./#name`` for such a file).  A
    name holding a newline, or made only of whitespace, is listed in a CSV (quoted) or Parquet list, whose
    ``path`` cells are also taken exactly as written (an empty cell is skipped).
    """
    remote = filesystems.is_uri(str(path))
    parent = posixpath.dirname(str(path)) if remote else Path(path).parent
    suffix = posixpath.splitext(str(path))[1].lower()
    if suffix in (".txt", ".lst"):
        for number, line in enumerate(_list_text(path, remote).split("\n"), 1):
            line = _without_line_ending(parent, line, remote)
            if line.strip() and not line.startswith("#"):
                yield _checked_name(path, number, line, _entry(parent, line, None), remote)
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(_list_text(path, remote), newline=""))
        try:
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns  # " path" and "path" are the same column
            if "path" not in columns:
                raise ListFileError(f"{path}: a CSV list needs a 'path' column in its first line "
                                    f"(it has: {', '.join(map(repr, columns)) or 'none'})")
            for row in reader:
                if row["path"]:
                    entry = _entry(parent, row["path"], row.get("label"))
                    yield _checked_name(path, reader.line_num, row["path"] + (row.get("label") or ""), entry,
                                        remote)
        except csv.Error as exc:
            raise ListFileError(f"{path}, line {reader.line_num}: not a readable CSV row ({exc})") from None
    else:
        yield from _read_parquet_list(path, parent, remote)


def _read_parquet_list(path, parent, remote: bool) -> Iterator[ImageFile]:
    import pyarrow as pa  # lazy, like every pyarrow import on the listing path
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(filesystems.read_bytes(str(path))) if remote else path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise ListFileError(f"{path}: not a readable Parquet file ({str(exc)[:200]}); "
                            "write the list again, or give it as .txt or .csv") from None
    if "path" not in schema.names:
        raise ListFileError(f"{path}: a Parquet list needs a 'path' column (it has: {', '.join(schema.names)})")
    text = (pa.types.is_string, pa.types.is_large_string)
    path_type = schema.field("path").type
    if not any(is_(path_type) for is_ in text):
        raise ListFileError(f"{path}: the 'path' column must hold strings, it holds {path_type}")
    columns = ["path"]
    if "label" in schema.names:
        label_type = schema.field("label").type
        if not (any(is_(label_type) for is_ in text) or pa.types.is_integer(label_type)
                or pa.types.is_null(label_type)):
            raise ListFileError(f"{path}: the 'label' column must hold strings or integers, it holds {label_type}")
        columns.append("label")
    row = 0
    try:
        for batch in parquet.iter_batches(columns=columns, batch_size=10_000):  # bounded memory
            paths = batch.column(0).to_pylist()
            labels = batch.column(1).to_pylist() if len(columns) == 2 else [None] * len(paths)
            for p, label in zip(paths, labels):
                row += 1
                if p:
                    yield _entry(parent, p, None if label is None else str(label))
    except (pa.ArrowException, OSError) as exc:
        raise ListFileError(f"{path}: unreadable after row {row} ({str(exc)[:200]}); write the list again") from None
