"""``imgsearch index --refresh-features``: the duplicates verifier's local features of every indexed image.

Computed from each file (decoded once, at most ``config.max_pixels``) for the
images whose features are missing or stale (another sha256), kept for the
others, and written as the folder's side table (``indexer/folder/features.py``)
under the writer lock, a batch of rows at a time (memory does not grow with the index).  A file that cannot be read is left out (the verifier
reads it itself later, or judges the pair by its score).
"""

from __future__ import annotations

from dataclasses import dataclass

from imgsearch.indexer.errors import ImgsearchError
from imgsearch.indexer.folder.features import read_features, write_features
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.inputs.filesystems import is_uri, read_bytes
from imgsearch.indexer.inputs.images import load_rgb
from imgsearch.indexer.inputs.local_features import THUMB, local_features
from imgsearch.indexer.progress import bar


@dataclass(frozen=True)
class FeaturesSummary:
    computed: int
    kept: int
    unreadable: int
    bytes: int

    def line(self) -> str:
        return (f"local features: {self.computed} computed, {self.kept} kept, {self.unreadable} files unreadable; "
                f"{self.bytes / 2**20:.1f} MiB")


def refresh_features(index_dir, config, *, wait: bool = True) -> FeaturesSummary:
    store = EmbeddingStore(index_dir)
    with writer_lock(index_dir, wait=wait, command="index --refresh-features"):
        manifest = store.read_manifest()
        table = store.read_table(manifest["shards"], ["id", "path", "sha256"])
        have = read_features(store.root)
        counts = {"computed": 0, "kept": 0, "unreadable": 0}

        def rows():  # made as they are written, a batch at a time: never every image's features at once
            items = zip(table.column("id").to_pylist(), texts_of(table, "path"), table.column("sha256").to_pylist())
            for row_id, path, sha in bar(list(items), desc="local features", unit="img", leave=False):
                if row_id in have and have.sha256(row_id) == sha:
                    counts["kept"] += 1
                    yield row_id, sha, have[row_id][1]
                    continue
                try:
                    img, _, _ = load_rgb(read_bytes(path) if is_uri(path) else path, min_size=THUMB,
                                         max_pixels=config.max_pixels)
                except (ImgsearchError, OSError):
                    counts["unreadable"] += 1
                    continue
                counts["computed"] += 1
                yield row_id, sha, local_features(img)

        size = write_features(store.root, rows())
        computed, kept, unreadable = counts["computed"], counts["kept"], counts["unreadable"]
    return FeaturesSummary(computed, kept, unreadable, size)
