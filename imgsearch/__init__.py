"""imgsearch: image similarity search over a folder of images.

The public API, all of it importable from here::

    from imgsearch import IndexConfig, SearchEngine, index_images

    index_images(["photos/"], "photos-index", IndexConfig())
    hits = SearchEngine.open("photos-index").search_image("query.jpg", k=5)

Everything else (``imgsearch.indexer``, ``imgsearch.search``, ``imgsearch.web``) is the implementation:
it may change between releases. Names are imported on first use, so ``import imgsearch`` stays light
(no TensorFlow, FAISS or Flask until a name that needs them is asked for).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("imgsearch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# name -> the module that defines it
_EXPORTS = {
    # indexing
    "IndexConfig": "imgsearch.indexer.config",
    "index_images": "imgsearch.indexer.run.pipeline",
    "index_vectors": "imgsearch.indexer.run.index_vectors",
    "train_head": "imgsearch.indexer.run.heads",
    # searching
    "SearchEngine": "imgsearch.search.engine",
    "Hit": "imgsearch.search.hits",
    "Example": "imgsearch.search.query.examples",
    "SearchClient": "imgsearch.search.client.http_client",
    "DuplicatesProgress": "imgsearch.search.duplicates.progress",  # SearchEngine.duplicates(progress=...)
    # serving
    "create_app": "imgsearch.web.app",
    # the one error family: every error imgsearch raises on purpose is an ImgsearchError
    "ImgsearchError": "imgsearch.indexer.errors",
    "InvalidInputError": "imgsearch.indexer.errors",
    "NotFoundError": "imgsearch.indexer.errors",
    "ImageError": "imgsearch.indexer.errors",
    "DamagedIndexError": "imgsearch.indexer.errors",
    "MissingDependencyError": "imgsearch.indexer.errors",
    "ExecutionError": "imgsearch.indexer.errors",
    "SearchAPIError": "imgsearch.search.client.http_client",
    "DuplicatesCancelledError": "imgsearch.search.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.errors import (DamagedIndexError, ExecutionError, ImageError, ImgsearchError,
                                          InvalidInputError, MissingDependencyError, NotFoundError)
    from imgsearch.indexer.run.heads import train_head
    from imgsearch.indexer.run.index_vectors import index_vectors
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.client.http_client import SearchAPIError, SearchClient
    from imgsearch.search.duplicates.progress import DuplicatesProgress
    from imgsearch.search.errors import DuplicatesCancelledError
    from imgsearch.search.engine import SearchEngine
    from imgsearch.search.query.examples import Example
    from imgsearch.search.hits import Hit
    from imgsearch.web.app import create_app


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imgsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
