"""PCA-whitening of the search space, learned on the indexed embeddings.

The stored embeddings never change; whitening is a transform applied to the
vectors the FAISS index holds and to every query, recorded in the manifest:
``x -> (x - mean) @ components.T / sqrt(variance + shrink * mean_variance)``,
then L2-normalised.  ``shrink`` keeps the smallest components from being
blown up into noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vectors import l2_normalize


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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, mean=self.mean, projection=self.projection)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Whitening":
        with np.load(path) as f:
            return cls(f["mean"], f["projection"])


def learn_whitening(vectors: np.ndarray, dim: int | None = None, shrink: float = 0.1,
                    seed: int = 0) -> Whitening:
    """Learn PCA-whitening from (n, D) embeddings, keeping ``dim`` components (default all usable)."""
    from sklearn.decomposition import PCA

    n, d = vectors.shape
    keep = min(dim or d, n - 1, d)
    if keep < 2:
        raise ValueError(f"whitening needs more than 2 embeddings and dim >= 2 (have {n}, dim={dim})")
    pca = PCA(n_components=keep, svd_solver="full" if n * d < 5e7 else "randomized", random_state=seed)
    pca.fit(vectors)
    var = pca.explained_variance_.astype(np.float64)  # (d,)
    scale = 1.0 / np.sqrt(var + shrink * var.mean())
    projection = (pca.components_.T * scale).astype(np.float32)  # (D, d)
    return Whitening(pca.mean_.astype(np.float32), projection)


def search_space(raw: np.ndarray, index_dir, manifest: dict) -> np.ndarray:
    """Stored/query embeddings (n, D) -> the unit vectors the FAISS index holds."""
    info = manifest.get("whitening")
    if not info:
        return l2_normalize(raw)
    return l2_normalize(load_for(index_dir, info).apply(raw))


_CACHE: dict[str, Whitening] = {}


def load_for(index_dir, info: dict) -> Whitening:
    path = Path(index_dir) / info["file"]
    if not path.is_file():
        from .store import IndexFormatError

        raise IndexFormatError(f"{path} is missing: re-run 'imgsearch whiten --index {index_dir}'")
    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in _CACHE:
        _CACHE[key] = Whitening.load(path)
    return _CACHE[key]


def set_whitening(index_dir, *, dim: int | None = 256, shrink: float = 0.1, off: bool = False) -> dict:
    """Learn PCA-whitening on the stored embeddings (or turn it off) and republish the index."""
    from .pipeline import publish_index
    from .store import EmbeddingStore, embeddings_of

    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    if off:
        manifest = {k: v for k, v in manifest.items() if k != "whitening"}
    else:
        raw = embeddings_of(store.read_table(manifest["shards"], ["embedding"]))  # (n, D)
        whitening = learn_whitening(raw, dim, shrink)
        name = f"whitening-{manifest.get('generation', 0) + 1:06d}.npz"
        whitening.save(Path(index_dir) / name)
        manifest = dict(manifest, whitening={"file": name, "dim": whitening.dim, "shrink": shrink,
                                             "learned_on": int(len(raw))})
    return publish_index(store, manifest, manifest["shards"])  # the store deletes whitening files nobody uses
