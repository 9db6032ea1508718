"""The errors a caller of ``search`` handles: the whole family (indexer/errors.py) and the specific
errors searching raises.  The web layer imports them from here and maps them to HTTP statuses
(web/errors.py)."""

from imgsearch.indexer.errors import (
    DamagedIndexError,
    ExecutionError,
    ImageError,
    ImgsearchError,
    InvalidInputError,
    MissingDependencyError,
    NotFoundError,
    quote,
)
from imgsearch.indexer.folder.heads import HeadDamagedError, HeadError, UnknownHeadError
from imgsearch.indexer.folder.manifest import ExternalVectorsError
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.inputs.images import ImageDecodeError, ImageTooLargeError
from imgsearch.search.engine import InvalidVectorError, UnknownIdError
from imgsearch.search.filters import InvalidFilterError, UnknownLabelError
from imgsearch.search.regions import InvalidBoxError
from imgsearch.search.thumbnails import ImageUnavailableError
from imgsearch.search.urls import UrlFetchError, UrlNotAllowedError

__all__ = ["DamagedIndexError", "ExecutionError", "ExternalVectorsError", "HeadDamagedError", "HeadError",
           "ImageDecodeError", "ImageError", "ImageTooLargeError", "ImageUnavailableError", "ImgsearchError",
           "IndexFormatError", "InvalidBoxError", "InvalidFilterError", "InvalidInputError", "InvalidVectorError",
           "MissingDependencyError", "NotFoundError", "UnknownHeadError", "UnknownIdError", "UnknownLabelError",
           "UrlFetchError", "UrlNotAllowedError", "quote"]
