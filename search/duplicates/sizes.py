"""What the duplicates reply shows of each member beside its evidence: width x height and file size, as stored.

The keeper rule ``largest`` is pixels first, then the file's size: a person checks it against these numbers.
They are the version's metadata columns (``width``, ``height`` from decoding at indexing time, ``file_size``
from the file system then; null in shards of formats 1-3), read once per report, never the files again.
"""

from __future__ import annotations

import numpy as np


class StoredSizes:
    """(width, height, file_size) of a version's images, by id."""

    def __init__(self, engine):
        self.engine = engine
        self._table = None

    def of(self, ids) -> list[dict]:
        """[{"width", "height", "file_size"}] of ``ids`` in their order; file_size None where not stored."""
        if self._table is None:
            table = self.engine.store.read_columns(self.engine.manifest["shards"], ["width", "height", "file_size"])
            self._table = {name: table.column(name).to_pylist() for name in ("width", "height", "file_size")}
        rows = self.engine.catalog.rows(np.asarray(ids, np.int64))  # the engine's row order is the shards' order
        return [{"width": self._table["width"][r], "height": self._table["height"][r],
                 "file_size": self._table["file_size"][r]} for r in rows.tolist()]
