"""The heads' search indexes: one head-aware FAISS index per head and published version.
"""

from __future__ import annotations

from imgsearch.indexer.atomic import atomic_write_faiss
from imgsearch.indexer.folder.heads import Head, head_index_path, list_heads, load_head
from imgsearch.indexer.folder.manifest import search_dim
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of


def rebuild_head_indexes(index_dir, manifest: dict) -> list[str]:
    """Every head's search index over the version ``manifest`` describes (before it is published)."""
    return [build_head_index(index_dir, load_head(index_dir, name, manifest), manifest)
            for name in list_heads(index_dir)]


def build_head_index(index_dir, head: Head, manifest: dict) -> str:
    """(Re)build the head-aware FAISS index over the manifest's shards; returns its file name."""
    return write_head_index(index_dir, head, manifest, head_search_index(index_dir, head, manifest))


def head_search_index(index_dir, head: Head, manifest: dict):
    """The head-aware FAISS index over the manifest's shards, in memory.

    Shard by shard, like the main index: peak memory is the index plus one shard.
    """
    from imgsearch.indexer.folder.whitening import search_space
    from imgsearch.indexer.vectors import add_to_index, new_flat_index

    store = EmbeddingStore(index_dir)
    index = new_flat_index(search_dim(manifest) + len(head.classes))
    for shard in manifest["shards"]:
        table = store.read_table([shard], ["id", "embedding"])
        raw = embeddings_of(table)  # (s, D)
        add_to_index(index, table.column("id").to_numpy(),
                     head.augment(search_space(raw, index_dir, manifest), raw))  # (s, d + C)
    return index


def write_head_index(index_dir, head: Head, manifest: dict, index) -> str:
    """Write a head's search index for the version ``manifest``, older generations' cleaned away."""
    path = head_index_path(index_dir, head.name, manifest)
    atomic_write_faiss(path, index)
    # keep the previous generation's: it is what is served until the manifest of this one is published
    generation = manifest.get("generation", 0)
    for old in path.parent.glob("search-*.faiss"):
        if old.stem[7:].isascii() and old.stem[7:].isdigit() and int(old.stem[7:]) < generation - 1:
            old.unlink(missing_ok=True)
    return path.name
