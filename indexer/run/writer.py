"""The one shard writer of an indexing run: rows or Arrow tables in, Parquet shards out, off the main thread."""

from __future__ import annotations

import queue
import threading
from typing import Sequence

import pyarrow as pa

from imgsearch.indexer.folder.store import EmbeddingStore, Row, rows_to_table


class ShardWriter:
    """Buffers rows and tables and writes a shard every ``shard_size`` rows, in order, off the main thread.

    ``add`` takes one ``Row`` (the local engine), ``add_table`` a table in the
    shard schema (a stage's embedded rows); both may be mixed, and
    the same rows make the same shards either way.  At most ``max_pending``
    full shards wait to be written, so memory stays bounded; ``close()``
    writes the rest, waits, and re-raises a write error.
    """

    def __init__(self, store: EmbeddingStore, dim: int, shard_size: int, max_pending: int = 2):
        self.store, self.dim, self.shard_size = store, dim, shard_size
        self._rows: list[Row] = []  # after the tables, in order
        self._tables: list[pa.Table] = []
        self._count = 0  # rows buffered, in both
        self.written: list[str] = []
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            shard = self._queue.get()
            if shard is None:
                return
            if self._error is None:
                try:
                    # rows become a table here, not in the producer's thread
                    table = rows_to_table(shard, self.dim) if isinstance(shard, list) else shard
                    self.written.append(self.store.write_table(table))
                except BaseException as exc:  # surfaced by add()/close() in the caller's thread
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def add(self, row: Row) -> None:
        self._check()
        self._rows.append(row)
        self._count += 1
        if self._count >= self.shard_size:
            self._cut(self.shard_size)

    def add_many(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.add(row)

    def add_table(self, table: pa.Table) -> None:
        """Append a table in the shard schema (``store.schema(dim)``)."""
        self._check()
        if not table.num_rows:
            return
        self._seal_rows()
        self._tables.append(table)
        self._count += table.num_rows
        while self._count >= self.shard_size:
            self._cut(self.shard_size)

    def _seal_rows(self) -> None:
        """Buffered rows -> a table, so that rows and tables keep their order."""
        if self._rows:
            self._tables.append(rows_to_table(self._rows, self.dim))
            self._rows = []

    def _cut(self, n: int) -> None:
        """Hand the first ``n`` buffered rows to the writer thread as one shard."""
        if not self._tables:  # rows only: the thread converts them
            shard, self._rows = self._rows[:n], self._rows[n:]
            self._count = len(self._rows)
            self._queue.put(shard)
            return
        self._seal_rows()
        table = pa.concat_tables(self._tables)
        rest = table.slice(n)
        self._tables, self._count = ([rest] if rest.num_rows else []), rest.num_rows
        self._queue.put(table.slice(0, n).combine_chunks())

    def flush(self) -> None:
        """Hand what is buffered to the writer thread as one shard."""
        if self._count:
            self._cut(self._count)

    def close(self) -> None:
        """Write what is buffered, wait for every shard to be on disk."""
        try:
            self.flush()
        finally:
            self._queue.put(None)
            self._thread.join()
        self._check()
