"""Turning whitening on or off for an index folder: learn it on the stored embeddings, republish.
"""

from __future__ import annotations

from pathlib import Path

from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.learn.whitening import learn_whitening


def set_whitening(index_dir, *, dim: int | None = 256, shrink: float = 0.1, off: bool = False,
                  wait: bool = True) -> dict:
    """Learn PCA-whitening on the stored embeddings (or turn it off) and republish the index.

    Holds the folder's writer lock (``wait=False``: IndexLockedError at once if another writer has it).
    """
    with writer_lock(index_dir, wait=wait):
        return _set_whitening(index_dir, dim, shrink, off)


def _set_whitening(index_dir, dim: int | None, shrink: float, off: bool) -> dict:
    from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
    from imgsearch.indexer.publish.version import publish_index

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
