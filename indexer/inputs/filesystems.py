"""Local paths and file-system URIs behind one small API.

A URI (``hdfs://namenode:8020/photos``, ``s3://bucket/photos``, ``gs://...``,
``abfs://...``, ``file:///data/photos``) goes through ``pyarrow.fs``; a scheme
pyarrow does not know goes through fsspec, when it is installed with the
package for that scheme.  A plain path is the local file system, read
without importing pyarrow (decode worker processes start fast).
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
from typing import Iterator

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.errors import InvalidInputError

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)$")
_LOCK = threading.Lock()
_FILESYSTEMS: dict[str, tuple[object, str]] = {}  # "scheme://authority" -> (FileSystem, path prefix)


def is_uri(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a file system by scheme (``s3://...``) rather than a local path."""
    return isinstance(path, str) and _URI.match(path) is not None


def join(base: str, *parts: str) -> str:
    """``base``/``parts``: posix joining for URIs, os.path for local paths."""
    return posixpath.join(base, *parts) if is_uri(base) else os.path.join(base, *parts)


def join_relative(base: str, relative: str) -> str:
    """The URI ``relative`` names, read from the folder URI ``base`` ('..' allowed)."""
    scheme, authority, rest = _URI.match(base).groups()
    return f"{scheme}://{authority}{posixpath.normpath(posixpath.join(rest or '/', relative))}"


def _from_uri(uri: str, shown: str):
    from pyarrow import ArrowInvalid, ArrowNotImplementedError, fs

    try:
        return fs.FileSystem.from_uri(uri)
    except (ArrowInvalid, ArrowNotImplementedError, ValueError) as exc:
        try:
            import fsspec
        except ImportError:
            raise InvalidInputError(f"cannot open {shown}: pyarrow.fs: {exc}. For a file system pyarrow does not "
                                    "know, pip install fsspec and its package for the scheme (s3fs, gcsfs, "
                                    "adlfs...)") from exc
        try:
            filesystem, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as fsspec_exc:
            raise InvalidInputError(f"cannot open {shown}: neither pyarrow.fs ({exc}) nor fsspec "
                                    f"({fsspec_exc}) knows this file system") from fsspec_exc
        return fs.PyFileSystem(fs.FSSpecHandler(filesystem)), path


def resolve(path: str | os.PathLike):
    """(pyarrow FileSystem, path inside it) for a URI or a local path.

    One file system object per scheme and authority (bucket, name node) per
    process: creating one can cost a network round trip (S3 looks up the region).
    """
    from pyarrow import fs

    path = str(path)
    m = _URI.match(path)
    if m is None:
        return fs.LocalFileSystem(), os.path.abspath(path)
    scheme, authority, rest = m.groups()
    key = f"{scheme}://{authority}"
    with _LOCK:
        if key not in _FILESYSTEMS:
            # the path a probe name maps to tells how this file system spells paths (with or without the bucket)
            filesystem, probe = _from_uri(f"{key}/imgsearch-probe", path)
            _FILESYSTEMS[key] = (filesystem, probe[: -len("imgsearch-probe")])
        filesystem, prefix = _FILESYSTEMS[key]
    return filesystem, prefix + rest.lstrip("/")


def read_bytes(path: str) -> bytes:
    """The content of one file; raises OSError when it cannot be read."""
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    import pyarrow as pa

    try:
        filesystem, inner = resolve(path)
    except ValueError as exc:  # no file system for that scheme: this file cannot be read
        raise OSError(str(exc)) from exc
    try:
        with filesystem.open_input_file(inner) as f:
            return f.read()
    except pa.ArrowException as exc:  # e.g. ArrowInvalid for a folder
        raise OSError(str(exc)) from exc


def kind(path: str) -> str | None:
    """'dir', 'file' or None (not there)."""
    from pyarrow import fs

    filesystem, inner = resolve(path)
    info = filesystem.get_file_info(inner)
    return {fs.FileType.Directory: "dir", fs.FileType.File: "file"}.get(info.type)


def walk_files(root: str) -> Iterator[str]:
    """Paths of all files under the folder ``root``, relative to it, posix-style (any order)."""
    from pyarrow import fs

    filesystem, inner = resolve(root)
    base = inner.rstrip("/") + "/"
    for info in filesystem.get_file_info(fs.FileSelector(inner, recursive=True)):
        if info.type == fs.FileType.File and info.path.startswith(base):
            yield info.path[len(base):]


def list_names(folder: str) -> list[str]:
    """Names of the files directly in ``folder``, sorted ([] when it does not exist)."""
    from pyarrow import fs

    filesystem, inner = resolve(folder)
    infos = filesystem.get_file_info(fs.FileSelector(inner, allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos if i.type == fs.FileType.File)


def make_dirs(folder: str) -> None:
    filesystem, inner = resolve(folder)
    filesystem.create_dir(inner, recursive=True)


def remove_tree(folder: str) -> None:
    from pyarrow import fs

    filesystem, inner = resolve(folder)
    if filesystem.get_file_info(inner).type == fs.FileType.Directory:
        filesystem.delete_dir(inner)


def remove_dir_if_empty(folder: str) -> None:
    from pyarrow import fs

    filesystem, inner = resolve(folder)
    if (filesystem.get_file_info(inner).type == fs.FileType.Directory
            and not filesystem.get_file_info(fs.FileSelector(inner))):
        filesystem.delete_dir(inner)


def remove_file(path: str) -> None:
    from pyarrow import fs

    filesystem, inner = resolve(path)
    if filesystem.get_file_info(inner).type == fs.FileType.File:
        filesystem.delete_file(inner)


def _write_atomic(path: str, tmp_tag: str, write) -> None:
    """Write through ``write(filesystem, tmp_path)`` so that a reader sees the whole file at ``path`` or none.

    Written under a hidden temporary name (``tmp_tag`` keeps concurrent
    writers apart), then renamed: atomic on a local disk and on HDFS; an
    object store shows an object only once it is complete, and the
    temporary name is never read.  A local path goes through indexer.atomic,
    which also makes the file and the rename durable (fsync).
    """
    from pyarrow import fs

    if not is_uri(path):
        local = os.path.abspath(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with atomic_path(local, tag=tmp_tag) as tmp:
            write(fs.LocalFileSystem(), str(tmp))
        return
    filesystem, inner = resolve(path)
    folder, name = posixpath.split(inner)  # pyarrow.fs spells paths with '/' everywhere
    filesystem.create_dir(folder, recursive=True)
    tmp = posixpath.join(folder, f".{name}.{tmp_tag}.tmp")
    write(filesystem, tmp)
    try:
        filesystem.move(tmp, inner)
    except OSError:
        # HDFS does not rename onto an existing file: another attempt of the same task wrote it first
        if filesystem.get_file_info(inner).type != fs.FileType.File:
            raise
        filesystem.delete_file(tmp)


def write_parquet(table, path: str, tmp_tag: str = "") -> None:
    import pyarrow.parquet as pq

    _write_atomic(path, tmp_tag or str(os.getpid()), lambda fs, tmp: pq.write_table(table, tmp, filesystem=fs))


def write_bytes(path: str, data: bytes, tmp_tag: str = "") -> None:
    def write(fs, tmp):
        with fs.open_output_stream(tmp) as f:
            f.write(data)

    _write_atomic(path, tmp_tag or str(os.getpid()), write)


def read_parquet(path: str, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    filesystem, inner = resolve(path)
    return pq.read_table(inner, columns=columns, filesystem=filesystem)
