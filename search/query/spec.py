"""One query's options, checked once: ``Query``, the frozen object every boundary builds and the engine takes.

The command line (click options), the JSON API (form fields, JSON bodies, query strings) and the Python
client build a ``Query`` where a request enters, and pass it on: the engine, the web layer and the client
never check ``k``, ``offset``, ``min_score``, ``head``, ``box``, ``filter`` or ``strategy`` again, and each
rule (its range, its error text) lives here, or in the one function this module calls for it (``parse_box``,
``parse_filter``, ``check_strategy``).

Two ways in, one set of rules:

- ``Query.of(k, offset=..., ...)``: Python values, as the engine's and the client's keywords take them;
- ``Query.from_fields(mapping)``: values as a request carries them, text or JSON (``"10"``, ``10``,
  ``10.0``; ``"0.8"``); numbers are read strictly: any size of integer or float is a clear error, never
  an overflow.

A bad value raises ``InvalidFieldError`` naming the field (the web answers 400 ``invalid_<field>``),
or the field's own error (``InvalidBoxError``, ``InvalidFilterError``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from imgsearch.indexer.errors import quote
from imgsearch.search.errors import HeadError, InvalidFieldError, InvalidFilterError
from imgsearch.search.query.examples import check_strategy
from imgsearch.search.query.filters import Filter, as_filter, parse_filter
from imgsearch.search.query.numbers import integer_field, loads
from imgsearch.search.query.regions import Box, parse_box
from imgsearch.search.query.window import DEFAULT_K, MAX_K, Window, check_k, check_min_score, check_offset

FIELDS = ("k", "offset", "min_score", "head", "box", "filter", "strategy")


def _head(raw, *, text: bool) -> str | None:
    if raw is None or (text and raw == ""):
        return None
    if not isinstance(raw, str) or not raw.strip():  # answered as an unknown head (400 unknown_head), as ever
        raise HeadError(f"head must be a head's name, got {quote(raw)}")
    return raw


def _strategy(raw, *, text: bool) -> str:
    return "rocchio" if raw is None or (text and raw == "") else check_strategy(raw)


def _filter_text(raw) -> Filter | None:
    """``filter`` as a request carries it: a JSON object, or in a form or query string its JSON text."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = loads(raw)
        except InvalidFieldError as exc:  # NaN, 1e400, a 400-digit integer, a key twice: what to change
            raise InvalidFilterError(f"filter: {exc}") from None
        except (ValueError, RecursionError):
            raise InvalidFilterError("filter must be a JSON object such as {\"label\": [\"cats\"]}, "
                                     f"got {quote(raw)}") from None
    return parse_filter(raw)


@dataclass(frozen=True)
class Query:
    """How a query is answered: which results (``k`` from rank ``offset``, scoring at least ``min_score``),
    scored how (``head``: head-aware; ``strategy``: of several examples), among which images (``filter``),
    by which region of the query image (``box``), and the largest query image taken (``max_pixels``, None:
    the engine's config).  Build it with ``Query.of`` or ``Query.from_fields``: they check every field."""

    k: int | None = None  # None: DEFAULT_K, or with min_score every result reaching it (to MAX_K)
    offset: int = 0
    min_score: float | None = None
    head: str | None = None
    box: Box | None = None
    filter: Filter | None = None
    strategy: str = "rocchio"
    max_pixels: int | None = None

    @classmethod
    def of(cls, k=None, *, offset=None, min_score=None, head=None, box=None, filter=None, strategy=None,
           max_pixels=None) -> "Query":
        """From Python values (the engine's keywords): integers as ints, ``box`` a sequence or ``"x0,y0,x1,y1"``,
        ``filter`` a ``Filter``, its JSON form (dict) or ``--where`` strings."""
        return cls(
            k=None if k is None else check_k(k),
            offset=0 if offset is None else check_offset(offset),
            min_score=check_min_score(min_score),
            head=_head(head, text=False),
            box=None if box is None else parse_box(box),
            filter=as_filter(filter),
            strategy=_strategy(strategy, text=False),
            max_pixels=None if max_pixels is None else integer_field(max_pixels, "max_pixels", 1, 2**62, text=False),
        )

    @classmethod
    def from_fields(cls, fields: Mapping) -> "Query":
        """From a request's fields (a form, a query string, a JSON body): text or JSON values, an empty text
        as absent; fields it does not know are left to the caller."""
        given = {name: fields.get(name) for name in FIELDS}
        given = {name: value for name, value in given.items() if value is not None and value != ""}
        return cls(
            k=check_k(given["k"], text=True) if "k" in given else None,
            offset=check_offset(given["offset"], text=True) if "offset" in given else 0,
            min_score=check_min_score(given.get("min_score"), text=True),
            head=_head(given.get("head"), text=True),
            box=parse_box(given["box"]) if "box" in given else None,
            filter=_filter_text(given.get("filter")),
            strategy=_strategy(given.get("strategy"), text=True),
        )

    def window(self, default_k: int = DEFAULT_K) -> Window:
        """The ranks this query is answered with (``default_k`` when it names no ``k`` and no ``min_score``)."""
        k = self.k if self.k is not None else (default_k if self.min_score is None else MAX_K)
        return Window(k, self.offset, self.min_score)

    def with_default_k(self, default_k: int) -> "Query":
        """This query with ``k`` settled (a server's ``DEFAULT_K``), so the engine answers as the server says."""
        return self if self.k is not None else replace(self, k=self.window(default_k).k)

    def without_box(self) -> "Query":
        return replace(self, box=None)

    def to_fields(self) -> dict:
        """The JSON fields ``from_fields`` reads back into this query (what the client sends); absent ones left out."""
        fields = {"k": self.k, "offset": self.offset or None, "min_score": self.min_score, "head": self.head,
                  "box": None if self.box is None else list(self.box),
                  "filter": None if self.filter is None else self.filter.describe(),
                  "strategy": None if self.strategy == "rocchio" else self.strategy}
        return {name: value for name, value in fields.items() if value is not None}


def as_query(query: Query | None, k=None, **fields) -> Query:
    """The engine's way in: ``query`` as given, or one built from the keyword fields, never both."""
    given = {name: value for name, value in fields.items() if value is not None}
    if query is None:
        return Query.of(k, **given)
    if not isinstance(query, Query):
        raise TypeError(f"query must be a Query, got {type(query).__name__}")
    if k is not None or given:
        named = ", ".join(["k"] * (k is not None) + sorted(given))
        raise TypeError(f"pass query=Query(...) or its fields, not both (also given: {named})")
    return query
