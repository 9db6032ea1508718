"""Shard tables of synthetic rows for the benchmarks that write their own index folders (bench_filters, bench_open).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from imgsearch.indexer.folder.store import schema
from imgsearch.indexer.folder.texts import text_array


def synthetic_table(ids: np.ndarray, vectors: np.ndarray, paths, labels, rng: np.random.Generator) -> pa.Table:
    """Rows ``ids`` (m,) with ``vectors`` (m, d) unit float32, their paths and labels, 640 x 480 pixels,
    a digest per id, file sizes drawn from ``rng``, no dates or camera: a table in the shard schema."""
    m, d = vectors.shape
    return pa.table({
        "id": pa.array(ids, pa.int64()), "path": text_array(paths), "label": text_array(labels),
        "width": pa.array(np.full(m, 640), pa.int32()), "height": pa.array(np.full(m, 480), pa.int32()),
        "sha256": pa.array([f"{j:064x}" for j in ids]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), d),
        "file_size": pa.array(rng.integers(10_000, 5_000_000, m), pa.int64()),
        "mtime": pa.nulls(m, pa.int64()), "taken": pa.nulls(m, pa.int64()),
        "camera_make": pa.nulls(m, pa.string()), "camera_model": pa.nulls(m, pa.string()),
    }, schema=schema(d))
