"""``rebuild_index(DIR)``: rebuild and re-tune the FAISS index from the stored embeddings (``imgsearch build-index``).

Nothing is re-embedded; the shards an interrupted run completed are adopted.
"""

from __future__ import annotations

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.publish.version import publish_index, resolve_options


def rebuild_index(index_dir, config: IndexConfig | None = None, *, wait: bool = True) -> dict:
    """Build the FAISS index from scratch as ``config`` says (unset options: as last time); returns the manifest.

    Holds the folder's writer lock (``wait=False``: IndexLockedError at once if another writer has it).
    """
    config = config or IndexConfig()
    with writer_lock(index_dir, wait=wait):
        store = EmbeddingStore(index_dir)
        manifest = store.read_manifest()
        options = resolve_options(manifest, config.ann_overrides())
        return publish_index(store, manifest, store.recover_shards(manifest), options=options, rebuild=True)
