"""Finding the image files to index and the label each one carries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ImageFile:
    path: str  # absolute path, as the user's file system names it
    label: str  # parent folder relative to the source root ("" at the root)


def iter_image_files(sources: Iterable[str | os.PathLike]) -> Iterator[ImageFile]:
    """Yield image files under folders (recursively, sorted) and named files, once each.

    Inside folders only known image extensions are taken; a file named
    explicitly is taken whatever its extension (the decoder decides).
    """
    seen: set[str] = set()
    for source in sources:
        root = Path(os.path.abspath(source))
        if root.is_dir():
            found = _walk(root)
        elif root.exists() or root.is_symlink():
            found = iter([ImageFile(str(root), root.parent.name)])
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
        for item in found:
            if item.path not in seen:
                seen.add(item.path)
                yield item


def _walk(root: Path) -> Iterator[ImageFile]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        label = "" if rel == "." else Path(rel).as_posix()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield ImageFile(os.path.join(dirpath, name), label)
