"""Stage 3 of indexing: write Parquet shards in a background thread."""

from __future__ import annotations

import queue
import threading
from typing import Sequence

from indexer.folder.store import EmbeddingStore, Row


class ShardWriter:
    """Buffers rows and writes a shard every ``shard_size`` rows, off the main thread.

    At most ``max_pending`` full shards wait to be written, so memory stays
    bounded; ``close()`` writes the rest, waits, and re-raises a write error.
    """

    def __init__(self, store: EmbeddingStore, dim: int, shard_size: int, max_pending: int = 2):
        self.store, self.dim, self.shard_size = store, dim, shard_size
        self.buffer: list[Row] = []
        self.written: list[str] = []
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            rows = self._queue.get()
            if rows is None:
                return
            if self._error is None:
                try:
                    self.written.append(self.store.write_shard(rows, self.dim))
                except BaseException as exc:  # surfaced by add()/close() in the caller's thread
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def add(self, row: Row) -> None:
        self._check()
        self.buffer.append(row)
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def add_many(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.add(row)

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread as one shard."""
        if self.buffer:
            self._queue.put(self.buffer)
            self.buffer = []

    def close(self) -> None:
        """Write what is buffered, wait for every shard to be on disk."""
        self.flush()
        self._queue.put(None)
        self._thread.join()
        self._check()
