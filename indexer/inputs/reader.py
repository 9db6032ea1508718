"""Stage 1 of indexing: read, hash and decode image files, in parallel worker processes.

Kept free of TensorFlow and pyarrow imports so worker processes start fast.
A decoded picture's local features for the duplicates verifier
(``local_features``) are computed here too, from the same decoded picture.
Results come back in input order, at most ``window`` ahead of the consumer,
so memory stays bounded however many files there are.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, Sized

import numpy as np

from imgsearch.indexer.inputs.filesystems import is_uri, read_bytes
from imgsearch.indexer.inputs.images import (
    DEFAULT_RESAMPLE,
    MAX_PIXELS,
    DecodedImage,
    ImageDecodeError,
    ImageTooLargeError,
    center_crop_resize,
    load_rgb,
    read_image_file,
)
from imgsearch.indexer.inputs.local_features import LocalFeatures, features_or_none
from imgsearch.indexer.inputs.metadata import FileInfo, capture
from imgsearch.indexer.inputs.sources import ImageFile
from imgsearch.indexer.parent_watch import exit_with_parent


@dataclass
class Decoded:
    file: ImageFile
    sha256: str
    image: DecodedImage
    info: FileInfo | None = None  # size, times, camera (``metadata.capture``)
    features: LocalFeatures | None = None  # the duplicates verifier's, from the same decoded picture


@dataclass
class Skipped:
    file: ImageFile
    reason: str


@dataclass
class AlreadyIndexed:
    file: ImageFile
    sha256: str
    info: FileInfo | None = None  # captured only when asked (``refresh_metadata``)


def digest_key(sha256_hex: str) -> int:
    """The first 64 bits of a sha256 as an unsigned int: the compact form of the known-files set."""
    return int(sha256_hex[:16], 16)


def known_keys(sha256s: Iterable[str]) -> np.ndarray:
    """Sorted (n,) uint64 keys of already indexed contents (8 bytes per image)."""
    return np.unique(np.fromiter((digest_key(s) for s in sha256s), dtype=np.uint64))


def _is_known(keys: np.ndarray, sha: str) -> bool:
    if not len(keys):
        return False
    key = np.uint64(digest_key(sha))
    i = int(np.searchsorted(keys, key))
    return i < len(keys) and keys[i] == key


CHUNK = 8  # files a decoding process is handed at once: one round trip for several images
# listed files up to which a run is decoded by threads of this process: starting a decoding process (spawn,
# importing Pillow, NumPy and OpenCV) costs about a second, more than it saves on a few dozen files
SMALL_RUN = 64


def batched(items: Iterable, n: int) -> Iterator[tuple]:
    """``itertools.batched`` (Python 3.12)."""
    it = iter(items)
    while group := tuple(islice(it, n)):
        yield group


_WORKER_KEYS = np.empty(0, np.uint64)  # a decoding process's known-content keys, set when it starts


def _init_worker(keys: np.ndarray) -> None:
    global _WORKER_KEYS
    _WORKER_KEYS = keys
    exit_with_parent()  # a killed run leaves no decoding process behind


def clear_worker_keys() -> None:
    """Forget the keys a decoding process was started with: ``read_one`` then decodes every file."""
    _init_worker(np.empty(0, np.uint64))


def read_one(file: ImageFile, size: int, keys: np.ndarray | None = None, max_pixels: int = MAX_PIXELS,
             resample: str = DEFAULT_RESAMPLE, refresh_metadata: bool = False, features: bool = True):
    """Read, hash and decode one file; never raises for a bad file.

    ``keys``: known-content keys (default: the worker's, set at start; pass an
    empty array to decode whatever is known).  Images over ``max_pixels`` are skipped; ``resample``: the
    index's resize filter (``manifest.resample``).  A decoded file's metadata is captured
    (``metadata.capture``); a known one's only with ``refresh_metadata``.  ``features``: a decoded picture's
    local features too (``Decoded.features``).
    """
    keys = _WORKER_KEYS if keys is None else keys
    try:
        # a local file is checked first (a pipe or device named .jpg is refused, not read); a URI
        # (hdfs://, s3://...) is read through its file system
        data = read_bytes(file.path) if is_uri(file.path) else read_image_file(file.path)
    except ImageDecodeError as exc:
        return Skipped(file, str(exc))
    except OSError as exc:
        return Skipped(file, f"cannot read file: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    local = not is_uri(file.path)
    if _is_known(keys, sha):
        return AlreadyIndexed(file, sha, capture(data, file.path, local=local) if refresh_metadata else None)
    try:
        image, found = _decode(data, size, max_pixels, resample, features)
        return Decoded(file, sha, image, capture(data, file.path, local=local), found)
    except ImageDecodeError as exc:
        return Skipped(file, str(exc))
    except Exception as exc:  # a decoder bug on one file must not end the run
        return Skipped(file, f"unexpected decoder error: {type(exc).__name__}: {exc}")


def _decode(data: bytes, size: int, max_pixels: int, resample: str,
            features: bool) -> tuple[DecodedImage, LocalFeatures | None]:
    """``images.decode_image``, and the local features (``local_features``) of the picture it decoded: no
    second decode (None without OpenCV)."""
    img, width, height = load_rgb(data, min_size=size, max_pixels=max_pixels)
    try:
        array = center_crop_resize(img, size, resample)
    except MemoryError as exc:
        raise ImageTooLargeError("image too large: not enough memory to resize it") from exc
    return DecodedImage(array, width, height), features_or_none(img) if features else None


def _pool(workers: int, keys: np.ndarray, threads: int) -> Executor:
    if threads:  # decode in threads of this process: Pillow and OpenCV release the GIL while they work
        return ThreadPoolExecutor(threads, thread_name_prefix="decode")
    # spawn, not fork: the parent may already run TensorFlow's threads
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(keys,))


def _read_chunk(files: list[ImageFile], size: int, max_pixels: int, resample: str, refresh: bool,
                features: bool) -> list:
    return [read_one(file, size, None, max_pixels, resample, refresh, features) for file in files]


def read_images(files: Iterable[ImageFile], size: int, known: np.ndarray | None = None, *,
                workers: int | None = None, window: int = 256, chunk: int = CHUNK,
                max_pixels: int = MAX_PIXELS, resample: str = DEFAULT_RESAMPLE,
                refresh_metadata: bool = False, features: bool = True) -> Iterator[Decoded | Skipped | AlreadyIndexed]:
    """Decode ``files`` in ``workers`` processes, yielding in input order.

    ``workers``: None decodes a list of at most SMALL_RUN files in one thread per core of this process and
    anything else in one process per core; 0 decodes in one thread of this process.

    ``known``: sorted uint64 keys (``known_keys``) of contents already indexed;
    those files are hashed but not decoded.  Images over ``max_pixels`` are skipped.
    A process is handed ``chunk`` files at a time; at most ``window`` files are in flight.
    ``refresh_metadata``: capture the metadata of known files too; ``features``: compute decoded pictures'
    local features.
    """
    keys = np.empty(0, np.uint64) if known is None else known
    cores = os.cpu_count() or 1
    threads = 1 if workers == 0 else 0
    if workers is None:
        small = isinstance(files, Sized) and len(files) <= SMALL_RUN
        workers, threads = (0, cores) if small else (cores, 0)
    if threads:  # a thread gets the keys with each call
        chunk = 1
    window = max(window // chunk, 1)  # in chunks
    with _pool(workers, keys, threads) as pool:
        pending: deque = deque()

        def submit(group: list[ImageFile]):
            if threads:
                return pool.submit(lambda: [read_one(group[0], size, keys, max_pixels, resample, refresh_metadata,
                                                     features)])
            # processes got the keys once, at start
            return pool.submit(_read_chunk, group, size, max_pixels, resample, refresh_metadata, features)

        for group in batched(files, chunk):
            pending.append(submit(list(group)))
            if len(pending) >= window:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
