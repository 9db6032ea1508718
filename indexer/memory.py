"""Giving back to the operating system the memory a large read freed but the allocators kept.

Opening a version reads every shard's ids and labels in threads and the FAISS index from its file: the
buffers on the way are freed, but Arrow's pool (mimalloc) and glibc's malloc keep the pages for reuse, so a
served process holds them for as long as it serves.  Measured on a 1,000,000-row 16-d index
(``scripts/bench_open.py``): 162 bytes a row of RSS after opening, 142 after Arrow's pool gives back its
unused pages, 99 after glibc's ``malloc_trim`` too (the FAISS index itself: 80).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_unused_memory() -> None:
    """Return the free pages of Arrow's memory pool and of glibc's heaps to the operating system."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
