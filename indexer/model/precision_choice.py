"""A new index's precision, chosen by measurement on this CPU (issue 32).

int8 is faster than float32 only where the CPU has instructions for it (AVX-512 VNNI, AVX-VNNI, AMX: about
3x); on an AVX2-only CPU the int8 model runs at the float32 model's speed and costs a little quality for
nothing.  So an x86 CPU without those instructions gets float32 from its flags (``without_measuring``);
on any other, the first time a new index needs a default, both TFLite models of the backbone are
timed on the same batch, in turns (``measure``), and int8 is chosen only if it is at least ``MARGIN`` times
faster (``choose``).  The result is cached beside the models, keyed by the backbone, the CPU's model name
and instruction flags and the thread count, so later runs read it (measured under a lock: a
second first run at the same time waits and reads the first's figures); the manifest records the choice and its
reason (``backbone.precision_reason``).  ``--precision`` always wins; an existing index keeps its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from imgsearch.indexer.atomic import atomic_write_bytes
from imgsearch.indexer.progress import step
from imgsearch.indexer.quiet import captured, libraries_log

log = logging.getLogger(__name__)

MARGIN = 1.3  # int8 must be this many times faster than float32 to be chosen
BATCH = 8  # images per timed call
ROUNDS = 5  # timed calls of each model, in turns; the fastest of each counts
PREPARE_SECONDS = 60  # about: converting both models and timing them, on a laptop's CPU
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # the flags that decide int8's speed
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products: where int8 can be ~3x faster


@dataclass(frozen=True)
class Measurement:
    float32_seconds: float  # the fastest call of BATCH images
    int8_seconds: float
    cpu: str  # the CPU's model name
    flags: str  # its INT8_FLAGS, space-separated
    threads: int

    @property
    def ratio(self) -> float:
        """How many times faster int8 ran than float32."""
        return self.float32_seconds / self.int8_seconds if self.int8_seconds > 0 else 0.0


def cpu_info() -> tuple[str, str]:
    """(model name, the INT8_FLAGS it has) from /proc/cpuinfo; elsewhere ('platform's name', 'unknown')."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor() or platform.machine(), "unknown"
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return name, " ".join(f for f in INT8_FLAGS if f in flags) or "no avx2/avx512/vnni"


def choose(measured: Measurement) -> tuple[str, str]:
    """(precision, the reason, for the manifest) from a measurement: int8 only if MARGIN times faster."""
    figures = (f"float32 {1000 * measured.float32_seconds / BATCH:.1f} ms/img, int8 "
               f"{1000 * measured.int8_seconds / BATCH:.1f} ms/img, {measured.threads} threads, "
               f"CPU flags: {measured.flags}")
    if measured.ratio >= MARGIN:
        return "int8", f"int8: {measured.ratio:.2f}x faster than float32 on this CPU ({figures})"
    return "float32", (f"float32: int8 was {measured.ratio:.2f}x float32's speed on this CPU, not the {MARGIN}x "
                       f"that pays for its small loss of quality ({figures})")


def _cache_file(backbone_name: str, cache_dir: Path, threads: int) -> Path:
    cpu, flags = cpu_info()
    key = hashlib.sha256(f"{backbone_name}|{cpu}|{flags}|{threads}|v1".encode()).hexdigest()[:16]
    return Path(cache_dir) / "models" / f"{backbone_name}-precision-{key}.json"


def without_measuring(flags: str) -> tuple[str, str] | None:
    """(float32, why) where the CPU's flags already answer: an x86 CPU without int8 dot-product instructions
    runs the int8 model at the float32 model's speed (measured here on an AVX2-only EPYC: 1.05-1.13x over
    three runs), so converting and timing both models (a minute) would only confirm it.  None: measure."""
    have = set(flags.split())
    if have & {"avx2", "avx512f"} and not have & set(VNNI_FLAGS):
        return "float32", (f"float32: this CPU has no int8 dot-product instructions ({', '.join(VNNI_FLAGS)}; "
                           f"CPU flags: {flags}), where int8 runs at float32's speed")
    return None


def measured_precision(backbone, cache_dir: Path, runner: Callable[[str], Callable], threads: int,
                       flags: str | None = None) -> tuple[str, str]:
    """(precision, reason) for a new index of ``backbone`` on this CPU: measured once, then read from the cache.

    ``runner(precision)``: the backbone's TFLite model of that precision with ``threads`` threads
    (``runtime.TFLiteRunner``).  A CPU whose ``flags`` (default: this one's) answer without measuring
    (``without_measuring``) is not measured."""
    known = without_measuring(cpu_info()[1] if flags is None else flags)
    if known is not None:
        log.info("precision of a new %s index: %s", backbone.name, known[1])
        return known
    path = _cache_file(backbone.name, cache_dir, threads)
    measured = _cached(path)
    if measured is None:  # none yet, or unreadable: measured, under a lock (another first run measuring
        path.parent.mkdir(parents=True, exist_ok=True)  # meanwhile is waited for, and its figures read)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when a killed holder dies
            measured = _cached(path)
            if measured is None:
                measured = measure(backbone, cache_dir, runner, threads)
                atomic_write_bytes(path, json.dumps(asdict(measured), indent=1).encode())
    chosen, reason = choose(measured)
    log.info("precision of a new %s index: %s", backbone.name, reason)
    return chosen, reason


def _cached(path: Path) -> Measurement | None:
    """The measurement cached at ``path``; None when there is none or it cannot be read."""
    try:
        return Measurement(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def measure(backbone, cache_dir: Path, runner: Callable[[str], Callable], threads: int) -> Measurement:
    """Time both TFLite models of ``backbone`` on one batch, in turns (both are converted if not cached)."""
    size = backbone.input_size
    batch = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
    with captured(libraries_log(cache_dir), f"measuring {backbone.name}'s precisions"), \
            step(f"preparing {backbone.name} for this CPU, once: about {PREPARE_SECONDS} s (its float32 and int8 "
                 f"models, timed to choose the faster); cached in {Path(cache_dir) / 'models'}", say=True):
        runners = {"float32": runner("float32"), "int8": runner("int8")}
        best = {name: float("inf") for name in runners}
        for runner in runners.values():
            runner(batch)  # warm-up: allocation, XNNPACK's packing
        for _ in range(ROUNDS):
            for name, runner in runners.items():
                started = time.perf_counter()
                runner(batch)
                best[name] = min(best[name], time.perf_counter() - started)
    cpu, flags = cpu_info()
    return Measurement(best["float32"], best["int8"], cpu, flags, threads)
