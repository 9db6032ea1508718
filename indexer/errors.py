"""The one family of errors imgsearch raises for problems its user can fix.

Every error raised on purpose, for a problem in what the caller passed or in the
environment, derives from ``ImgsearchError``; its message says what to change.  Any
other exception is a bug.  The command line prints an ``ImgsearchError`` as one
``Error: ...`` line (web/cli.py); the web app answers it with the HTTP status that
web/errors.py gives its kind.

The kinds below are what callers catch; the specific errors (``IndexFormatError``,
``HeadError``, ``ImageDecodeError``, ``UnknownIdError``...) are defined where they are
raised, under one of these kinds.  A kind keeps a builtin base where the errors it
replaced had one, so code that catches ``ValueError`` or ``ImportError`` still does.
"""

from __future__ import annotations


class ImgsearchError(Exception):
    """The root: a problem the user can fix; the message says what to change."""


class InvalidInputError(ImgsearchError, ValueError):
    """A value passed in (an argument, an option, a setting, a query) is not acceptable: pass another."""


class InvalidFieldError(InvalidInputError):
    """A field with a value it cannot take (``k``, ``offset``, ``min_score``, a weight, an id, a number on the
    command line): ``field`` names it, the message says what it takes."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class NotFoundError(ImgsearchError):
    """Something asked for by name (an image id, a head, a source file) does not exist: name one that does."""


class ImageError(ImgsearchError):
    """An image cannot be read or decoded: skipped when indexing, refused as a query."""

    def about(self, name: str) -> ImageError:
        """The same error with its message prefixed by the image's name (e.g. an upload's file name)."""
        return type(self)(f"{name}: {self}")


class DamagedIndexError(ImgsearchError):
    """The index folder is not an index, or a file in it is missing or damaged: check, repair or rebuild it."""


class MissingDependencyError(ImgsearchError, ImportError):
    """Something a feature needs is not installed (PySpark, Java, npm, a weights package): install it."""


class ExecutionError(ImgsearchError, RuntimeError):
    """A run's worker processes or its Spark job failed; the message says why and what work is kept."""


QUOTE_LIMIT = 200  # characters of a caller's value an error message repeats


def quote(value, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a 20 MB value is not echoed back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
