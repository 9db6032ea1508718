#!/usr/bin/env python
"""Bulk indexing for scripts and scheduled jobs: folders, text lists, CSV or Parquet tables of paths.

    python scripts/bulk_index.py --index /srv/pictures.idx /data/photos /data/extra.csv --sync

Same engine as `imgsearch index` (decode processes, TFLite, background shard
writer, resume after a kill); prints one JSON summary line, for logs, and
exits 0 even when some files were skipped (they are listed in DIR/skipped.log).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from imgsearch.indexer.config import DEFAULT_BACKBONE, IndexConfig
from imgsearch.indexer.run.pipeline import index_images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", type=Path, help="folders, .txt lists, .csv/.parquet with a path column")
    ap.add_argument("--index", required=True, type=Path)
    ap.add_argument("--backbone", default=None, help=f"default: the index's, or {DEFAULT_BACKBONE}")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=None, help="decode processes (default: one per core)")
    ap.add_argument("--sync", action="store_true", help="remove images whose files are gone")
    ap.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    args = ap.parse_args()

    from imgsearch.indexer.folder.store import EmbeddingStore

    store = EmbeddingStore(args.index)
    backbone = args.backbone or (store.read_manifest()["backbone"]["name"] if store.exists() else DEFAULT_BACKBONE)
    config = dataclasses.replace(IndexConfig(), backbone=backbone, batch_size=args.batch_size,
                                 shard_size=args.shard_size, decode_workers=args.workers, progress=args.progress)
    summary = index_images(args.sources, args.index, config, sync=args.sync)
    out = dataclasses.asdict(summary)
    out["skipped"] = len(summary.skipped)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
