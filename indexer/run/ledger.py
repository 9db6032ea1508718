"""Which listed files a run embeds, and under which id: decided in one place.

The indexing run (``indexing.run_index``) reports the listed files to a
``Ledger`` in listing order, each with its content hash or the reason it
could not be read, and gets back the id to store a new image under, whichever
local stage embedded them.  The Spark engines apply the same rules as
DataFrame steps (``ids``), so the same files give the same ids under
any engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imgsearch.indexer.folder.copies import Copies, read_copies
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.inputs.reader import known_keys
from imgsearch.indexer.inputs.sources import ImageFile

if TYPE_CHECKING:
    from imgsearch.indexer.folder.store import EmbeddingStore
    from imgsearch.indexer.run.summary import IndexSummary


class Ledger:
    """The ids and contents of an index as a run goes.

    ``present``: with sync, the paths listed by this run; indexed images whose
    paths are not among them are removed.
    """

    def __init__(self, store: "EmbeddingStore", manifest: dict, shards: list[str], summary: "IndexSummary",
                 present: set[str] | None = None):
        self.store, self.summary = store, summary
        existing = store.read_table(shards, ["id", "path", "sha256"])
        ids = existing.column("id").to_pylist()
        # path -> (id, sha256) of what is indexed
        self.by_path = dict(zip(texts_of(existing, "path"), zip(ids, existing.column("sha256").to_pylist())))
        self.next_id = max(max(ids, default=-1) + 1, manifest.get("next_id", 0))  # removed ids are never reused
        self.remove_ids: set[int] = set()  # replaced by a re-embedded version, or gone (sync)
        if present is not None:
            gone = {path: row for path, row in self.by_path.items() if path not in present}
            self.remove_ids.update(row_id for row_id, _ in gone.values())
            summary.removed = len(gone)
            self.by_path = {p: row for p, row in self.by_path.items() if p not in gone}
        self.known = {sha for _, sha in self.by_path.values()}  # contents in the index after this run
        self._added: set[str] = set()  # contents this run adds
        self._holds = dict(self.by_path.values())  # id -> sha256 of every image in the index after this run
        self._id_of = {sha: row_id for row_id, sha in self._holds.items()}  # content -> the id holding it
        self.copies: Copies = read_copies(store.root, manifest)  # exact copies: path -> (id, sha256)
        if present is not None:
            self.copies.drop_paths([p for p in self.copies.by_path if p not in present])

    def known_keys(self) -> np.ndarray:
        """Sorted 64-bit keys of the indexed contents, for readers to skip decoding them."""
        return known_keys(self.known)

    def is_known(self, sha256: str) -> bool:
        return sha256 in self.known

    def admit(self, file: ImageFile, sha256: str | None, reason: str = "") -> int | None:
        """Record one listed file; returns the id to embed it under, or None when it is not embedded.

        ``sha256`` None: the file could not be read or decoded (``reason`` says why).
        A new content gets the next id, or keeps the id of its path when the
        file changed; an indexed content or a duplicate of this run gets None.
        """
        if sha256 is None:
            self.summary.skipped.append((file.path, reason))
            self.store.log_skipped([f"{file.path}\t{reason}"])
            return None
        old = self.by_path.get(file.path)
        new = sha256 not in self.known
        row_id = None
        if old is not None and old[1] != sha256:  # same path, new content
            self.remove_ids.add(old[0])
            self._holds.pop(old[0], None)
            self.summary.changed += 1
            if new:
                row_id = old[0]
        if not new:
            if sha256 in self._added:
                self.summary.duplicates += 1
            else:
                self.summary.already_indexed += 1
            holder = self._id_of.get(sha256)
            if (old is None or old[1] != sha256) and holder in self._holds:  # another path's content
                self.copies.add(file.path, holder, sha256)
            return None
        self.known.add(sha256)
        self._added.add(sha256)
        if row_id is None:
            row_id, self.next_id = self.next_id, self.next_id + 1
        self._holds[row_id] = sha256
        self._id_of[sha256] = row_id
        self.copies.drop_paths([file.path])  # a copy no more: its file now holds content of its own
        return row_id

    def final_copies(self) -> Copies:
        """The copies of the index after this run: those whose image still holds their content."""
        self.copies.keep_only(self._holds)
        return self.copies
