"""The errors a caller of ``search`` handles: the whole family (indexer/errors.py) and the specific
errors searching raises.  The web layer imports them from here and maps them to HTTP statuses
(web/errors.py)."""

from indexer.errors import (
    DamagedIndexError,
    ExecutionError,
    ImageError,
    ImgsearchError,
    InvalidInputError,
    MissingDependencyError,
    NotFoundError,
    quote,
)
from indexer.folder.heads import HeadDamagedError, HeadError, UnknownHeadError
from indexer.folder.manifest import ExternalVectorsError
from indexer.folder.store import IndexFormatError
from indexer.inputs.images import ImageDecodeError, ImageTooLargeError
from search.engine import InvalidVectorError, UnknownIdError
from search.filters import InvalidFilterError, UnknownLabelError
from search.regions import InvalidBoxError
from search.thumbnails import ImageUnavailableError
from search.urls import UrlFetchError, UrlNotAllowedError

__all__ = ["DamagedIndexError", "ExecutionError", "ExternalVectorsError", "HeadDamagedError", "HeadError",
           "ImageDecodeError", "ImageError", "ImageTooLargeError", "ImageUnavailableError", "ImgsearchError",
           "IndexFormatError", "InvalidBoxError", "InvalidFilterError", "InvalidInputError", "InvalidVectorError",
           "MissingDependencyError", "NotFoundError", "UnknownHeadError", "UnknownIdError", "UnknownLabelError",
           "UrlFetchError", "UrlNotAllowedError", "quote"]
