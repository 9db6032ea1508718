"""What imgsearch writes is never an input: index folders and the files its commands write are left out of
every listing (``sources``), however they are reached (a folder walked, a file named, a list's entry, a
relative or linked path).

* An index folder is known by its signs: the writer's lock file (``.writer.lock``, made by every run that
  writes one), or a ``manifest.json`` beside a ``shards`` folder (an index of an older release).  Its whole
  tree is left out, whatever was written under it (``DIR/report`` of ``imgsearch evaluate``, heads...).
* A file a command writes elsewhere (``imgsearch evaluate --out``'s report, ``imgsearch explain --out``'s
  picture) is named in the ``.imgsearch-output`` file of its folder (``mark_output``), one name a line.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgsearch.indexer.atomic import atomic_write_bytes

OUTPUT_LIST = ".imgsearch-output"  # the names, one a line, of the files imgsearch wrote into this folder
LOCK_FILE = ".writer.lock"  # indexer/folder/lock.py's: every folder a run wrote has it
_HEADER = b"# files imgsearch wrote here (never indexed as images); one name a line\n"


def mark_output(paths) -> None:
    """Record files imgsearch wrote (or is about to write), so that no listing takes them as images."""
    by_folder: dict[Path, set[bytes]] = {}
    for path in paths:
        path = Path(os.path.abspath(path))
        by_folder.setdefault(path.parent, set()).add(os.fsencode(path.name))
    for folder, names in by_folder.items():
        listed = _listed(folder)
        if names - listed:
            body = b"".join(n + b"\n" for n in sorted(listed | names) if b"\n" not in n)
            atomic_write_bytes(folder / OUTPUT_LIST, _HEADER + body)


def _listed(folder: Path) -> set[bytes]:
    try:
        data = (folder / OUTPUT_LIST).read_bytes()
    except OSError:
        return set()
    return {line for line in data.split(b"\n") if line and not line.startswith(b"#")}


def is_index_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an imgsearch index folder (of this release or an older one)."""
    folder = Path(folder)
    return (folder / LOCK_FILE).is_file() or ((folder / "manifest.json").is_file() and (folder / "shards").is_dir())


class OutputFilter:
    """Tells which paths are imgsearch's own outputs; ``left_out`` collects (path, reason) of those found.

    ``index_dirs``: index folders to leave out although they carry no sign yet (the run's own, being created).
    Folder answers are cached: one listing asks about each folder once.
    """

    def __init__(self, index_dirs=()):
        self._own = {_identity(d) for d in index_dirs} - {None}
        self._folders: dict[str, str | None] = {}  # real folder path -> why it is left out (None: it is not)
        self._names: dict[str, dict[bytes, str]] = {}  # real folder path -> outputs in it -> why left out
        self.left_out: list[tuple[str, str]] = []

    def folder_reason(self, folder: str) -> str | None:
        """Why a folder's whole tree is left out (an index folder), else None; the folder's ancestors included."""
        real = os.path.realpath(folder)
        if real in self._folders:
            return self._folders[real]
        parent = os.path.dirname(real)
        reason = self.folder_reason(parent) if parent != real else None
        if reason is None and (_identity(real) in self._own or is_index_folder(real)):
            reason = f"inside the index folder {real}: what imgsearch writes is never indexed"
        self._folders[real] = reason
        return reason

    def written_in(self, folder: str) -> dict[bytes, str]:
        """The files imgsearch wrote into ``folder`` (names as bytes) -> why each is left out."""
        real = os.path.realpath(folder)
        if real not in self._names:
            why = f"written by imgsearch (listed in {os.path.join(real, OUTPUT_LIST)}): never indexed"
            self._names[real] = dict.fromkeys(_listed(Path(real)), why)
        return self._names[real]

    def file_reason(self, path: str) -> str | None:
        """Why one file is left out (in an index folder, or written by imgsearch), else None."""
        real = os.path.realpath(path)
        folder = os.path.dirname(real)
        return self.folder_reason(folder) or self.written_in(folder).get(os.fsencode(os.path.basename(real)))

    def keep(self, path: str, reason: str | None) -> bool:
        """Whether to list ``path``; records it as left out when ``reason`` says why not."""
        if reason is None:
            return True
        self.left_out.append((path, reason))
        return False


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
