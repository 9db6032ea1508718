"""The errors a caller of ``search`` handles: the web layer maps them to HTTP statuses (web/errors.py)."""

from indexer.folder.heads import HeadError
from indexer.folder.store import IndexFormatError
from indexer.inputs.images import ImageDecodeError, ImageTooLargeError
from search.engine import UnknownIdError
from search.thumbnails import ImageUnavailableError

__all__ = ["HeadError", "ImageDecodeError", "ImageTooLargeError", "ImageUnavailableError", "IndexFormatError",
           "UnknownIdError"]
