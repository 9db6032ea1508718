"""``imgsearch index --refresh-metadata``: the file metadata columns of already indexed images, captured again.

An indexing run captures FILE_COLUMNS (``indexer/inputs/metadata.py``) for
the files it embeds; asked to, it also captures them for the files it finds
already indexed (unchanged content, same path), and the shards holding those
rows are rewritten with the new values, as new shards (the originals are
retired like a removal's).  Ids and embeddings do not change, so the FAISS
index and the heads' indexes stay as they are.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from imgsearch.indexer.folder.store import FILE_COLUMNS, EmbeddingStore, schema
from imgsearch.indexer.inputs.metadata import FileInfo


def rewrite_file_columns(store: EmbeddingStore, shards: Sequence[str], infos: Mapping[int, FileInfo],
                         dim: int) -> tuple[list[str], list[str]]:
    """(the shard list with the rows of ``infos`` carrying their new metadata, the shards replaced)."""
    if not infos:
        return list(shards), []
    wanted = np.fromiter(infos, np.int64, len(infos))
    kept, replaced, rewritten = [], [], []
    target = schema(dim)
    for name in shards:
        ids = store.read_table([name], ["id"]).column("id").to_numpy()
        hit = np.isin(ids, wanted)
        if not hit.any():
            kept.append(name)
            continue
        table = store.read_columns([name], target.names)  # a shard of formats 1-3 gets its null FILE_COLUMNS
        for column in FILE_COLUMNS:
            values = table.column(column).to_pylist()
            for row in np.flatnonzero(hit):
                values[row] = getattr(infos[int(ids[row])], column)
            table = table.set_column(target.get_field_index(column), target.field(column),
                                     pa.array(values, FILE_COLUMNS[column]))
        replaced.append(name)
        rewritten.append(store.write_table(table.cast(target)))
    return kept + rewritten, replaced
