"""One writer per index folder: an exclusive advisory lock that every writing command holds.

``flock`` on ``DIR/.writer.lock``: the kernel releases it when the holder's
process ends, however it ends (kill -9 included), so a lock is never stale.
The holder writes who it is (pid, command, since) into the file, so a second
writer can say whom it waits for.  Readers (search, the server) never take it:
they read published versions, which writers never change in place.

Within one thread the lock is re-entrant (a job calling another job on the
same folder); two threads of one process exclude each other like two processes.

The jobs in ``indexer/run`` take it (``run_index`` for the whole run, start-up
clean-up and Spark job included), so what one writer finds half-written in the
folder (temporary files, unpublished shards) is never another live writer's.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from imgsearch.indexer.errors import ExecutionError
from imgsearch.indexer.folder.store import MANIFEST, SHARD_DIR, IndexFormatError
from imgsearch.indexer.inputs.outputs import LOCK_FILE  # listings recognise index folders by it

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75  # sysexits.h: "try again later", the exit status of a writer that would not wait

_held: dict[tuple[int, str], int] = {}  # (thread, folder) -> depth: this process's locks, for re-entry
_held_guard = threading.Lock()


class IndexLockedError(ExecutionError):
    """Another writer holds the folder's lock and the caller asked not to wait.

    An ExecutionError: the run could not be carried out now, nothing of the folder
    was touched, and running it again later (or waiting) does it.
    """

    exit_code = EX_TEMPFAIL  # the command line exits with it (web/cli.py)


def describe_holder(lock_path: Path) -> str:
    """Who holds the lock, as the holder recorded it ('another process' if it wrote nothing readable)."""
    try:
        info = json.loads(lock_path.read_text())
        host = info.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return (f"pid {int(info['pid'])}{where} ({str(info.get('command', '?'))[:120]}, "
                f"since {info.get('since', '?')})")
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or by something else
        return "another process"


def _held_by_parent(lock_path: Path) -> bool:
    try:
        info = json.loads(lock_path.read_text())
        return int(info["pid"]) == os.getppid() and info.get("host") == socket.gethostname()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _command() -> str:
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:] if sys.argv and sys.argv[0] else ["python"]
    return " ".join(argv)[:200]


@contextmanager
def writer_lock(index_dir, *, wait: bool = True, command: str | None = None,
                create: bool = False) -> Iterator[None]:
    """Hold ``index_dir``'s writer lock for the block.

    ``wait=False``: raise IndexLockedError at once if another writer holds it;
    otherwise wait for it, saying once (a warning) whom for.  ``create``: make
    the folder if it is missing (a new index); otherwise a missing folder is
    not an index (IndexFormatError, as the store says it), and nothing is created.
    """
    folder = Path(index_dir)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise IndexFormatError(f"{folder} is not an imgsearch index (no such folder); create one with "
                               f"'imgsearch index SRC --index {folder}'")
    elif not (folder / MANIFEST).exists() and not (folder / SHARD_DIR).is_dir():
        # a folder of pictures named by mistake: no lock file there, which would mark it as an index folder
        # that indexing never lists (inputs/outputs.py)
        raise IndexFormatError(f"{folder} is not an imgsearch index (no {MANIFEST}); create one with "
                               f"'imgsearch index SRC --index {folder}'")
    key = (threading.get_ident(), os.path.realpath(folder))
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(path)
            if _held_by_parent(path):  # e.g. a worker re-running a script that has no __main__ guard
                raise ExecutionError(f"{folder} is being written by this process's parent ({holder}), which "
                                     "waits for this process: waiting for it would never end") from None
            if not wait:
                raise IndexLockedError(f"{folder} is being written by {holder}; wait for it to finish, or run "
                                       "again without --no-wait to wait") from None
            log.warning("waiting for %s: it is being written by %s", folder, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or _command(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as exc:  # a full disk: the lock holds all the same, only whom it is for is not said
            log.info("%s: cannot record the lock's holder: %s", folder, exc.strerror or exc)
        with _held_guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]
            try:
                os.ftruncate(fd, 0)  # nobody holds it now
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
