"""Marking pairs of images "not a duplicate", unmarking them, listing the marks (``imgsearch not-duplicates``).

The marks live in the index folder (``indexer/folder/dup_marks.py``, keyed by
the images' sha256, so they hold in every later version); every later
duplicates run keeps a marked pair out of one group
(``search/duplicates/marks.py``).  Marking ids ``[a, b, c]`` marks every pair
among them (a whole group: none of them is a duplicate of another).  Writes
hold the folder's writer lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

from imgsearch.indexer.errors import InvalidInputError, NotFoundError
from imgsearch.indexer.folder.dup_marks import MAX_MARK_IDS, Mark, listing, read_marks, write_marks
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import display_text, texts_of
from imgsearch.indexer.numbers import id_field


@dataclass
class MarkSummary:
    pairs: int  # pairs among the ids given
    changed: int  # of them newly marked (mark) or unmarked (unmark)
    total: int  # marks in the folder after

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "changed": self.changed, "total": self.total}


def check_ids(ids: Sequence) -> list[int]:
    """The distinct ids of a mark, in the order given; InvalidInputError unless there are 2 to MAX_MARK_IDS."""
    out = list(dict.fromkeys(id_field(i, "id", text=isinstance(i, str)) for i in ids))
    if len(out) < 2:
        raise InvalidInputError(f"a mark needs two different ids (a pair, or every member of a group), got "
                                f"{len(out)}: {', '.join(map(str, out)) or 'none'}")
    if len(out) > MAX_MARK_IDS:
        raise InvalidInputError(f"at most {MAX_MARK_IDS} ids in one mark, got {len(out)}")
    return out


def _indexed(store: EmbeddingStore) -> dict[int, tuple[str, str]]:
    """{id: (sha256, path)} of the published version."""
    manifest = store.read_manifest()
    table = store.read_table(manifest["shards"], ["id", "sha256", "path"])
    return dict(zip(table.column("id").to_pylist(), zip(table.column("sha256").to_pylist(), texts_of(table, "path"))))


def mark_not_duplicates(index_dir, ids: Sequence, *, wait: bool = True) -> MarkSummary:
    """Mark every pair among ``ids`` (indexed ids) "not a duplicate"; NotFoundError for an id not indexed,
    InvalidInputError for byte-identical copies (one content: they are one picture)."""
    ids = check_ids(ids)
    with writer_lock(index_dir, wait=wait):
        store = EmbeddingStore(index_dir)
        indexed = _indexed(store)
        unknown = [i for i in ids if i not in indexed]
        if unknown:
            raise NotFoundError(f"no image with id {', '.join(map(str, unknown))} in {index_dir}: mark indexed "
                                "ids (imgsearch duplicates lists them)")
        marks = read_marks(store.root)
        have = {m.sha256 for m in marks}
        now, added = time.strftime("%Y-%m-%dT%H:%M:%S%z"), 0
        for a, b in combinations(ids, 2):
            (sa, pa), (sb, pb) = indexed[a], indexed[b]
            if sa == sb:
                raise InvalidInputError(f"ids {a} and {b} have the same content (sha256 {sa[:12]}…): they are one "
                                        "picture, not a pair to mark")
            if sb < sa:
                (a, sa, pa), (b, sb, pb) = (b, sb, pb), (a, sa, pa)
            if (sa, sb) not in have:
                have.add((sa, sb))
                marks.append(Mark((sa, sb), (a, b), (display_text(pa), display_text(pb)), now))
                added += 1
        if added:
            write_marks(store.root, marks)
        return MarkSummary(len(ids) * (len(ids) - 1) // 2, added, len(marks))


def unmark(index_dir, ids: Sequence, *, wait: bool = True) -> MarkSummary:
    """Remove the marks of every pair among ``ids``: by the content the ids hold now, or, for an id no longer
    indexed, by the ids recorded when it was marked."""
    ids = check_ids(ids)
    with writer_lock(index_dir, wait=wait):
        store = EmbeddingStore(index_dir)
        indexed = _indexed(store)
        given = set(ids)
        shas = {indexed[i][0] for i in ids if i in indexed}
        marks = read_marks(store.root)
        kept = [m for m in marks if not (set(m.sha256) <= shas or set(m.ids) <= given)]
        if len(kept) != len(marks):
            write_marks(store.root, kept)
        return MarkSummary(len(ids) * (len(ids) - 1) // 2, len(marks) - len(kept), len(kept))


def list_marks(index_dir) -> list[dict]:
    """Every mark, as ``indexer/folder/dup_marks.listing`` lists them for the published version."""
    store = EmbeddingStore(index_dir)
    return listing(read_marks(store.root), {sha: i for i, (sha, _) in _indexed(store).items()})
