"""The errors a caller of ``search`` handles, at the bottom of the package: the whole family
(indexer/errors.py), the indexer's errors a reader meets, and the errors searching raises, defined here so
every module of search imports them from below.  The web layer maps them to HTTP statuses
(web/errors.py)."""

from imgsearch.indexer.errors import (
    DamagedIndexError,
    ExecutionError,
    ImageError,
    ImgsearchError,
    InvalidFieldError,
    InvalidInputError,
    MissingDependencyError,
    NotFoundError,
    quote,
)
from imgsearch.indexer.folder.heads import HeadDamagedError, HeadError, UnknownHeadError
from imgsearch.indexer.folder.manifest import ExternalVectorsError, TextQueriesUnsupportedError
from imgsearch.indexer.folder.store import DamagedShardError, IndexFormatError
from imgsearch.indexer.inputs.images import ImageDecodeError, ImageTooLargeError

__all__ = ["ChangedFileError", "DamagedIndexError", "DuplicatesCancelledError", "DamagedShardError", "ExecutionError", "ExternalVectorsError", "HeadDamagedError",
           "HeadError", "ImageDecodeError", "ImageError", "ImageTooLargeError", "ImageUnavailableError",
           "ImgsearchError", "IndexFormatError", "InvalidBoxError", "InvalidFieldError", "InvalidFilterError",
           "InvalidInputError", "InvalidVectorError", "MissingDependencyError", "NotFoundError",
           "TextQueriesUnsupportedError", "UnknownHeadError",
           "UnknownIdError", "UnknownLabelError", "UrlFetchError", "UrlNotAllowedError", "quote"]


class InvalidVectorError(InvalidInputError):
    """A query vector is not the index's dimension of finite numbers."""


class UnknownIdError(NotFoundError, KeyError):
    """No image with this id is in the index."""

    def __init__(self, row_id):
        super().__init__(row_id)
        self.id = row_id

    def __str__(self) -> str:
        return f"no image with id {self.id} in the index"


class InvalidFilterError(InvalidInputError):
    """A filter names an unknown field or operator, or a value of the wrong type; the message says which."""


class UnknownLabelError(InvalidFilterError):
    """A filter asks for a label no indexed image has; the message lists the labels there are."""


class InvalidBoxError(InvalidInputError):
    """A region that is not four fractions inside the image with x0 < x1 and y0 < y1."""


class ImageUnavailableError(ImageError, OSError):
    """An indexed image whose file cannot be read any more."""


class ChangedFileError(ImageUnavailableError):
    """An indexed image whose file no longer holds the picture that was indexed."""


class UrlNotAllowedError(InvalidInputError):
    """The guard refused the URL or its reply: the message says why (scheme, address, redirects, size,
    time, content type)."""


class UrlFetchError(InvalidInputError):
    """The URL is allowed but fetching it failed: no such host, no connection, an HTTP error status."""


class DuplicatesCancelledError(ImgsearchError):
    """A duplicates computation was cancelled (a job's cancel, Ctrl-C): nothing of it was cached."""

    exit_code = 130  # the shell's code for a run ended by Ctrl-C
