"""Removing images from an index by id or path; the other ids stay as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from imgsearch.indexer.folder.copies import read_copies, write_copies
from imgsearch.indexer.folder.features import update_features
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.publish.version import publish_index


@dataclass
class RemovalSummary:
    removed: list[int]
    unknown: list[str]  # ids or paths that are not in the index
    total: int


def remove_images(index_dir, items: Sequence[str | int], *, wait: bool = True) -> RemovalSummary:
    """Remove images from an index by id (int or digits) or path; ids of the rest stay as they are.

    Holds the folder's writer lock (``wait=False``: IndexLockedError at once if another writer has it).
    """
    with writer_lock(index_dir, wait=wait):
        return _remove(index_dir, items)


def _remove(index_dir, items: Sequence[str | int]) -> RemovalSummary:
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    shards = store.recover_shards(manifest)
    table = store.read_table(shards, ["id", "path"])
    id_of_path = dict(zip(texts_of(table, "path"), table.column("id").to_pylist()))
    all_ids = set(table.column("id").to_pylist())
    remove, unknown = set(), []
    for item in items:
        text = str(item)
        if text.isascii() and text.isdigit() and int(text) in all_ids:
            remove.add(int(text))
        elif os.path.abspath(text) in id_of_path:
            remove.add(id_of_path[os.path.abspath(text)])
        else:
            unknown.append(text)
    if remove or shards != manifest["shards"]:
        kept, retired = store.rewrite_without(shards, remove)
        copies = read_copies(store.root, manifest)
        copies.drop_ids(remove)  # a removed image's exact copies are not listed any more
        if copies.changed:
            manifest = dict(manifest, copies=write_copies(store.root, copies))
        manifest = publish_index(store, manifest, kept, retired)
        update_features(store.root, [], remove)  # the verifier's features of the removed images go too
    return RemovalSummary(sorted(remove), unknown, manifest["count"])
