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
from indexer.folder.store import IndexFormatError
from indexer.inputs.images import ImageDecodeError, ImageTooLargeError
from search.engine import InvalidVectorError, UnknownIdError
from search.filters import InvalidFilterError, UnknownLabelError
from search.thumbnails import ImageUnavailableError

__all__ = ["DamagedIndexError", "ExecutionError", "HeadDamagedError", "HeadError", "ImageDecodeError", "ImageError", "ImageTooLargeError",
           "ImageUnavailableError", "ImgsearchError", "IndexFormatError", "InvalidInputError", "InvalidVectorError",
           "MissingDependencyError", "NotFoundError", "UnknownHeadError", "UnknownIdError", "quote",
           "InvalidFilterError", "UnknownLabelError"]
