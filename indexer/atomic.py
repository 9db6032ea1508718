"""Writing a local file so that a reader, or a crash, finds the old content or the new, never part of it.

Every writer puts its bytes into a temporary file in the target's folder (a
rename is atomic only within one file system), flushes and fsyncs it, renames
it over the target with ``os.replace``, then fsyncs the folder: without that
last step the rename itself may be lost in a power cut, leaving the old file
although the caller was told the new one is written.

Temporary names are ``.NAME.TAG.tmp`` plus an optional suffix (TAG: the
process id unless given), hidden and matched by the ``.*.tmp*`` pattern with
which ``EmbeddingStore.remove_temp_files`` deletes what a killed writer left.
On any exception the temporary file is removed and the target is untouched.

Running out of space (ENOSPC, or EDQUOT for a quota), whoever reports it (an
OSError, pyarrow's OSError, FAISS's RuntimeError naming the reason), is raised
as one ``DiskFullError`` saying which file could not be written, here, for
every writer.  FAISS files are written through ``atomic_write_faiss``: FAISS's
own file writer loses the error of its last buffered write, leaving a
truncated file that looks written.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from imgsearch.indexer.errors import ExecutionError

TEMP_MARK = ".tmp"  # every temporary name holds it: ".NAME.TAG.tmp[SUFFIX]"


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# how libraries that do not raise an OSError with its errno (FAISS) name those errors in their messages
_DISK_FULL_TEXTS = tuple(os.strerror(e) for e in DISK_FULL_ERRNOS)


class DiskFullError(ExecutionError, OSError):
    """A file could not be written for lack of disk space (or quota): nothing half-written is left
    behind and what the folder held is unchanged; free some space and run the command again."""

    __str__ = BaseException.__str__  # the message, not OSError's "[Errno 28] ..." form


def disk_full_error(exc: BaseException, path: str | os.PathLike) -> DiskFullError | None:
    """``exc`` as a DiskFullError about writing ``path`` if it says the disk (or quota) is full, else None."""
    if isinstance(exc, DiskFullError):
        return exc
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    code = exc.errno if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS else None
    text = str(exc)
    if code is None:
        code = next((e for e, t in zip(DISK_FULL_ERRNOS, _DISK_FULL_TEXTS) if t in text), None)
    if code is None:
        return None
    error = DiskFullError(f"cannot write {path}: the disk is full ({os.strerror(code)}); free some space and run "
                          "the command again (what the folder held before is unchanged)")
    error.errno, error.strerror, error.filename = code, os.strerror(code), str(path)
    return error


def temp_path(path: str | os.PathLike, tag: str | None = None, suffix: str = "") -> Path:
    """The temporary name a write of ``path`` goes to: beside it, hidden, ``.NAME.TAG.tmp[SUFFIX]``.

    ``tag`` (default: the process id) keeps concurrent writers of one target apart;
    ``suffix`` is for writers that insist on an extension (``.npz``, ``.keras``).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{tag or os.getpid()}{TEMP_MARK}{suffix}")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the entries of ``folder`` (a rename into it, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some file systems cannot sync a folder; the rename is still atomic
            raise
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush to disk a file another library wrote through its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def atomic_path(path: str | os.PathLike, *, tag: str | None = None, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through, for writers that take a path
    (``faiss.write_index``, ``np.savez``, ``pyarrow.parquet.write_table``, ``keras.Model.save``).

    When the block ends normally the file is fsynced and renamed onto ``path``;
    when it raises, the temporary file is deleted and ``path`` keeps what it held.
    """
    path = Path(path)
    tmp = temp_path(path, tag, suffix)
    try:
        yield tmp
        fsync_file(tmp)
        _replace(tmp, path)
    except BaseException as exc:  # Ctrl-C too: nothing half-written stays behind
        tmp.unlink(missing_ok=True)
        _raise_if_disk_full(exc, path)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, tag: str | None = None,
                 encoding: str | None = None) -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` when the block ends normally.

    ``mode``: "wb" (bytes) or "w" (text, in ``encoding``). When the block raises,
    ``path`` keeps what it held and the temporary file is deleted.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write replaces the whole file: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = temp_path(path, tag)
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _raise_if_disk_full(exc, path)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, tag: str | None = None) -> None:
    """Replace ``path`` with ``data``, atomically and durably."""
    with atomic_write(path, "wb", tag=tag) as f:
        f.write(data)


def atomic_write_faiss(path: str | os.PathLike, index) -> None:
    """Write a FAISS index to ``path``, atomically and durably, every failed write raised.

    Not ``faiss.write_index(index, name)``: its file writer only prints an error
    of the final fclose (the last buffered bytes not written, a full disk), so
    the file would be truncated and look written.  Through a Python file
    object, every write that fails raises.
    """
    import faiss

    with atomic_write(path, "wb") as f:
        writer = faiss.PyCallbackIOWriter(f.write)
        faiss.write_index(index, writer)
        del writer  # before the file is flushed and closed


def _raise_if_disk_full(exc: BaseException, path: Path) -> None:
    error = disk_full_error(exc, path)
    if error is not None and error is not exc:
        raise error from exc


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces the folder ``path`` when the block ends normally.

    Its files are fsynced, the old folder (if any) is moved aside, the new one
    renamed into place and the old one deleted: a reader sees the old folder or
    the new one, whole (between the two renames, none). When the block raises,
    the temporary folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_path(path)
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    for leftover in (tmp, old):  # left by a killed writer that had this process id
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                fsync_file(file)
        fsync_dir(tmp)
        # a folder cannot be renamed over a non-empty one: the old one goes aside first
        had_old = path.exists()
        if had_old:
            os.replace(path, old)
        try:
            _replace(tmp, path)
        except BaseException:
            if had_old and not path.exists():
                os.replace(old, path)
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_if_disk_full(exc, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_folder(path: str | os.PathLike) -> None:
    """Delete the folder ``path`` so that a reader sees it whole or not at all: renamed aside in one
    step (the rename made durable), then deleted."""
    path = Path(path)
    aside = path.with_name(f".{path.name}.{os.getpid()}.deleted")
    shutil.rmtree(aside, ignore_errors=True)  # left by a killed process that had this process id
    os.replace(path, aside)
    fsync_dir(path.parent)
    shutil.rmtree(aside, ignore_errors=True)
