"""PCA-whitening of the search space as stored in the index folder, and applying it.

The stored embeddings never change; whitening is a transform applied to the
vectors the FAISS index holds and to every query, recorded in the manifest:
``x -> (x - mean) @ components.T / sqrt(variance + shrink * mean_variance)``,
then L2-normalised.  ``shrink`` keeps the smallest components from being
blown up into noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.vectors import l2_normalize


@dataclass
class Whitening:
    mean: np.ndarray  # (D,)
    projection: np.ndarray  # (D, d): components.T scaled per component

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, D) -> (n, d), not normalised."""
        return (np.asarray(vectors, np.float32) - self.mean) @ self.projection

    def save(self, path: Path) -> None:
        with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to a name without it
            np.savez(tmp, mean=self.mean, projection=self.projection)

    @classmethod
    def load(cls, path: Path) -> "Whitening":
        with np.load(path) as f:
            return cls(f["mean"], f["projection"])


def search_space(raw: np.ndarray, index_dir, manifest: dict) -> np.ndarray:
    """Stored/query embeddings (n, D) -> the unit vectors the FAISS index holds."""
    info = manifest.get("whitening")
    if not info:
        return l2_normalize(raw)
    return l2_normalize(load_for(index_dir, info).apply(raw))


_CACHE: dict[str, Whitening] = {}  # "path:mtime_ns" -> the whitening that file holds


def clear_cache() -> None:
    """Forget the whitenings read so far: the next ``load_for`` reads its file again."""
    _CACHE.clear()


def load_for(index_dir, info: dict) -> Whitening:
    path = Path(index_dir) / info["file"]
    if not path.is_file():
        from imgsearch.indexer.folder.store import IndexFormatError

        raise IndexFormatError(f"{path} is missing: re-run 'imgsearch whiten --index {index_dir}'")
    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in _CACHE:
        _CACHE[key] = Whitening.load(path)
    return _CACHE[key]
