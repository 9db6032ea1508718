"""What the duplicates reply shows of each member beside its evidence: width x height and file size, as stored.

The keeper rule ``largest`` is pixels first, then the file's size: a person checks it against these numbers.
They are the version's metadata columns (``width``, ``height`` from decoding at indexing time, ``file_size``
from the file system then; null in shards of formats 1-3), read from the members' row groups
(``Catalog.sizes``), never the files again.
"""

from __future__ import annotations

import numpy as np


class StoredSizes:
    """(width, height, file_size) of a version's images, by id: the row groups of the members only (a report
    over a million images reads what its groups show, never whole columns)."""

    def __init__(self, engine):
        self.engine = engine

    def of(self, ids) -> list[dict]:
        """[{"width", "height", "file_size"}] of ``ids`` in their order; None where not stored."""
        rows = self.engine.catalog.rows(np.asarray(ids, np.int64))
        return [{"width": w, "height": h, "file_size": size} for w, h, size in self.engine.catalog.sizes(rows)]
