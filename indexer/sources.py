"""Finding the image files to index and the label each one carries.

A source is a folder (walked recursively), an image file, or a list of
images: a text file (``.txt``/``.lst``, one path per line), a CSV or a
Parquet file with a ``path`` column and optionally a ``label`` column.
Relative paths in a list are relative to the list's folder.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .images import IMAGE_EXTENSIONS

LIST_SUFFIXES = frozenset({".txt", ".lst", ".csv", ".parquet"})


@dataclass(frozen=True)
class ImageFile:
    path: str  # absolute path, as the user's file system names it
    label: str  # parent folder relative to the source root ("" at the root), or the list's label


def iter_image_files(sources: Iterable[str | os.PathLike]) -> Iterator[ImageFile]:
    """Yield the images of every source once each, in a stable order (folders sorted).

    Inside folders only known image extensions are taken; a file named
    explicitly, or in a list, is taken whatever its extension (the decoder decides).
    """
    seen: set[str] = set()
    for source in sources:
        root = Path(os.path.abspath(source))
        if root.is_dir():
            found = _walk(root)
        elif root.suffix.lower() in LIST_SUFFIXES and root.is_file():
            found = _read_list(root)
        elif root.exists() or root.is_symlink():
            found = iter([ImageFile(str(root), root.parent.name)])
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
        for item in found:
            if item.path not in seen:
                seen.add(item.path)
                yield item


def count_image_files(sources: Iterable[str | os.PathLike]) -> int:
    """How many images ``iter_image_files`` will yield (a listing pass, nothing is read)."""
    return sum(1 for _ in iter_image_files(sources))


def _walk(root: Path) -> Iterator[ImageFile]:
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
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        label = "" if rel == "." else Path(rel).as_posix()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield ImageFile(os.path.join(dirpath, name), label)


def _entry(base: Path, path: str, label: str | None) -> ImageFile:
    full = os.path.abspath(os.path.join(base, os.path.expanduser(path.strip())))
    return ImageFile(full, label.strip() if label else Path(full).parent.name)


def _read_list(path: Path) -> Iterator[ImageFile]:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".lst"):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    yield _entry(path.parent, line.rstrip("\n"), None)
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if "path" not in columns:
                raise ValueError(f"{path}: a CSV list needs a 'path' column (it has: {', '.join(columns) or 'none'})")
            for row in reader:
                if row["path"] and row["path"].strip():
                    yield _entry(path.parent, row["path"], row.get("label"))
    else:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if "path" not in names:
            raise ValueError(f"{path}: a Parquet list needs a 'path' column (it has: {', '.join(names)})")
        columns = ["path"] + (["label"] if "label" in names else [])
        for batch in parquet.iter_batches(columns=columns, batch_size=10_000):  # bounded memory
            paths = batch.column(0).to_pylist()
            labels = batch.column(1).to_pylist() if len(columns) == 2 else [None] * len(paths)
            for p, label in zip(paths, labels):
                if p:
                    yield _entry(path.parent, p, label)
