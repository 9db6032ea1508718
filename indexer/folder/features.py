"""The local features side table: ``local-features.parquet`` in an index folder (optional).

One row per indexed image: its id, the sha256 of the content the features
were computed from, and its ``LocalFeatures`` (``indexer/inputs/local_features.py``:
keypoints, descriptors, a small RGB thumbnail), about 13 KB.  The duplicates
verifier reads them instead of decoding the files again.  A row counts only
while its sha256 is the one the version's shards hold for the id (a changed
file's features are stale and ignored); an image without a row is read from
its file.  Written whole and atomically by ``imgsearch index --refresh-features``
(``indexer/run/features.py``) under the writer lock; not named by the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imgsearch.indexer.atomic import atomic_path
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.inputs.local_features import LocalFeatures

FEATURES_FILE = "local-features.parquet"
SCHEMA = pa.schema([("id", pa.int64()), ("sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                    ("points", pa.binary()), ("descriptors", pa.binary()), ("thumb_width", pa.int32()),
                    ("thumb_height", pa.int32()), ("thumb", pa.binary())])


def write_features(root, rows: list[tuple[int, str, LocalFeatures]]) -> int:
    """Write the table of ``rows`` (id, sha256, features), replacing any; returns its size in bytes."""
    columns = {name: [] for name in SCHEMA.names}
    for row_id, sha, f in rows:
        values = (int(row_id), sha, f.size[0], f.size[1], np.ascontiguousarray(f.points, np.float32).tobytes(),
                  np.ascontiguousarray(f.descriptors, np.uint8).tobytes(), f.thumb.shape[1], f.thumb.shape[0],
                  np.ascontiguousarray(f.thumb, np.uint8).tobytes())
        for name, value in zip(SCHEMA.names, values):
            columns[name].append(value)
    table = pa.table({n: pa.array(v, SCHEMA.field(n).type) for n, v in columns.items()}, schema=SCHEMA)
    path = Path(root) / FEATURES_FILE
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)
    return path.stat().st_size


def read_features(root) -> dict[int, tuple[str, LocalFeatures]]:
    """{id: (sha256, features)} of the table; empty when the folder has none."""
    path = Path(root) / FEATURES_FILE
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        raise IndexFormatError(f"{path} is unreadable: {exc}; delete it, or write it again with "
                               "'imgsearch index ... --refresh-features'") from exc
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise IndexFormatError(f"{path} has columns {table.schema.names}, not {SCHEMA.names}: delete it, or "
                               "write it again with 'imgsearch index ... --refresh-features'")
    out = {}
    for r in table.to_pylist():
        points = np.frombuffer(r["points"], np.float32).reshape(-1, 2)
        descriptors = np.frombuffer(r["descriptors"], np.uint8).reshape(-1, 32)
        thumb = np.frombuffer(r["thumb"], np.uint8).reshape(r["thumb_height"], r["thumb_width"], 3)
        if len(points) != len(descriptors):
            raise IndexFormatError(f"{path}: id {r['id']} has {len(points)} keypoints and {len(descriptors)} "
                                   "descriptors: it is damaged; write it again with --refresh-features")
        out[r["id"]] = (r["sha256"], LocalFeatures(points, descriptors, (r["width"], r["height"]), thumb))
    return out
