#!/usr/bin/env python
"""Index images on a Spark cluster, for spark-submit: `imgsearch index --engine spark` as a script.

    spark-submit --master yarn --deploy-mode client \\
        --conf spark.executor.cores=4 --conf spark.task.cpus=4 \\
        --conf spark.executor.memory=2g --conf spark.executor.memoryOverhead=2g \\
        --conf spark.executorEnv.IMGSEARCH_CACHE=/tmp/imgsearch-cache \\
        scripts/spark_index.py hdfs:///data/photos --index /srv/photos.idx \\
        --work-dir hdfs:///tmp/imgsearch-work/photos

The master and every Spark setting come from spark-submit.  Prints one JSON
summary line; files that could not be indexed are listed in INDEX/skipped.log.
Run it again after a failure: finished tasks are not run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from imgsearch.indexer.config import DEFAULT_BACKBONE, IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.spark.images import index_images_spark, spark_session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", help="folders, image files or lists: local paths or URIs")
    ap.add_argument("--index", required=True, help="index folder (on the driver's disk)")
    ap.add_argument("--work-dir", default=None,
                    help="executors' results: a URI or a path every executor shares (default: INDEX/spark-work)")
    ap.add_argument("--backbone", default=None, help=f"default: the index's, or {DEFAULT_BACKBONE}")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--task-size", type=int, default=None, help="files per Spark task (the unit of resume)")
    ap.add_argument("--sync", action="store_true", help="remove images whose files are gone")
    args = ap.parse_args()

    store = EmbeddingStore(args.index)
    backbone = args.backbone or (store.read_manifest()["backbone"]["name"] if store.exists() else DEFAULT_BACKBONE)
    config = dataclasses.replace(IndexConfig(), backbone=backbone, batch_size=args.batch_size,
                                 shard_size=args.shard_size, spark_task_size=args.task_size,
                                 spark_work_dir=args.work_dir, progress=False)
    spark = spark_session(config)
    summary = index_images_spark(args.sources, args.index, config, spark=spark, sync=args.sync)
    out = dataclasses.asdict(summary)
    out["skipped"] = len(summary.skipped)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
