"""The one configuration object for indexing and querying."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch.indexer.errors import InvalidInputError

DEFAULT_BACKBONE = "efficientnet-lite0"
# The most pixels an image may declare for the decoder to decode it (indexer/inputs/images.py); any
# configured limit (IndexConfig.max_pixels, the web app's MAX_IMAGE_PIXELS) is at most this.
MAX_PIXELS = 180_000_000
# how a backbone may run (indexer/model/runtime.py): "auto" picks TFLite on CPU, tf.function on GPU
RUNTIMES = ("auto", "tflite", "tf")
# how the model computes (indexer/model/runtime.py): float32, or a calibrated full-integer model (TFLite only)
PRECISIONS = ("float32", "int8")
# where an IVF index's inverted lists live: in RAM, or in a memory-mapped file (indexer/ann/choice.py wants_on_disk)
ON_DISK_MODES = ("auto", "always", "never")
# a new index's precision when none is asked for: model/runtime.default_precision (int8 on CPU for efficientnet-lite)


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
    # an ONNX model's spec (backbone "onnx:FILE.onnx"; indexer/model/onnx_spec.py): a dict, JSON text or a JSON
    # file's path; None: the index's own, or for a new index FILE.onnx.json beside the model
    model_spec: dict | str | None = None
    batch_size: int = 32
    runtime: str = "auto"  # "auto" (TFLite on CPU, tf.function on GPU), "tflite" or "tf"
    # None: the index's precision; for a new one int8 on CPU (efficientnet-lite), else float32.
    # Queries always use the index's.
    precision: str | None = None
    shard_size: int = 4096  # rows per Parquet shard
    decode_workers: int | None = None  # decoding processes; None = one per core (threads for a small run), 0 = a thread
    local_features: bool = True  # the duplicates verifier's features, computed while decoding and stored
    cache_dir: Path = field(default_factory=default_cache_dir)
    progress: bool = True
    # the FAISS index (see indexer/ann/); None keeps what the index was last built with, else the default
    index_type: str | None = None  # "auto" or a FAISS factory string such as "IVF1024,Flat" or "HNSW32"
    max_index_memory: int | str | None = None  # bytes (or "4G") the index may take in RAM; default 32 GiB
    target_recall: float | None = None  # recall@10 against exact search that tuning aims for; default 0.95
    rerank: bool | None = None  # re-score approximate candidates with the full vectors (memory-mapped)
    use_gpu: str = "auto"  # "auto": FAISS on GPU when it has one; "no": always CPU
    # IVF inverted lists in a memory-mapped file (indexer/ann/choice.py wants_on_disk): "auto", "always",
    # "never"; None keeps what the index was last built with
    on_disk: str | None = None
    # images declaring more pixels are skipped (indexing) or refused (queries), before decoding
    max_pixels: int = MAX_PIXELS
    # the Spark engine (indexer/spark/images.py)
    spark_master: str | None = None  # None: spark-submit's master, else local[*]
    spark_task_size: int | None = None  # files per Spark task, the unit of resume; None: <= 1024, >= 2 tasks a core
    spark_work_dir: str | None = None  # executors' results (a URI or shared path on a cluster); None: DIR/spark-work

    def __post_init__(self):
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.runtime not in RUNTIMES:
            raise InvalidInputError(f"runtime must be {', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]}, got {self.runtime!r}")
        if self.precision is not None:
            check_precision(self.precision, self.runtime)
        if self.model_spec is not None and not self.backbone.startswith("onnx:"):
            raise InvalidInputError(f"a model spec is for an ONNX model (backbone onnx:FILE.onnx), not "
                                    f"{self.backbone}: leave it out")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise InvalidInputError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.use_gpu not in ("auto", "no"):
            raise InvalidInputError(f"use_gpu must be auto or no, got {self.use_gpu!r}")
        if self.on_disk is not None and self.on_disk not in ON_DISK_MODES:
            raise InvalidInputError(f"on_disk must be {', '.join(ON_DISK_MODES[:-1])} or {ON_DISK_MODES[-1]}, "
                                    f"got {self.on_disk!r}")
        if self.shard_size < 1:
            raise InvalidInputError(f"shard_size must be >= 1, got {self.shard_size}")
        check_max_pixels(self.max_pixels, "max_pixels")
        if self.max_index_memory is not None:
            parse_memory(self.max_index_memory)  # refused now, not after the images are embedded
        if self.spark_task_size is not None and self.spark_task_size < 1:
            raise InvalidInputError(f"spark_task_size must be >= 1, got {self.spark_task_size}")

    def ann_overrides(self) -> dict:
        """The index options this config sets explicitly (AnnOptions field -> value)."""

        given = {"index_type": self.index_type, "target_recall": self.target_recall, "rerank": self.rerank,
                 "on_disk": self.on_disk,
                 "max_memory": None if self.max_index_memory is None else parse_memory(self.max_index_memory)}
        return {k: v for k, v in given.items() if v is not None} | {"use_gpu": self.use_gpu}


def check_precision(precision, runtime: str = "auto") -> str:
    """A precision the runtime can run, or InvalidInputError."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and runtime == "tf":
        raise InvalidInputError("precision int8 runs only through TFLite: use --runtime tflite (or auto), "
                                "or --precision float32 with --runtime tf")
    return precision


def check_max_pixels(value, name: str) -> int:
    """A pixel limit between 1 and the decoder's ceiling MAX_PIXELS, or InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PIXELS:
        raise InvalidInputError(f"{name} must be an integer between 1 and {MAX_PIXELS:,} (the decoder's ceiling), "
                         f"got {value!r}")
    return value


def parse_memory(text) -> int:
    """'4G', '512MB', '1.5GiB', 2**30 -> bytes."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise InvalidInputError(f"memory size {text!r} not understood: write e.g. 512M, 4G or 1.5GB")
        value = int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))
    if value <= 0:
        raise InvalidInputError(f"memory size must be positive, got {text!r}")
    return value
