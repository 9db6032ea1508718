"""Reading the examples of a query (``positive`` and ``negative``) from JSON or multipart, and a
base64 image, into what the engine takes (``search/query/examples.py``).

A JSON example is an object with exactly one kind field, a key of ``EXAMPLE_KINDS`` (``{"id": 3}``,
``{"vector": [...]}``, ``{"image": "<base64>"}``, ``{"text": "a red car"}``), and optional fields of ``EXAMPLE_FIELDS``
(``"weight"``).  A new kind of example is one entry in ``EXAMPLE_KINDS``: a function from the
field's value and the example's name to an ``Example``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable

from imgsearch.search.errors import InvalidFieldError, InvalidInputError, quote
from imgsearch.search.query.examples import MAX_EXAMPLES, Example, check_examples, check_weight
from imgsearch.search.query.numbers import id_field
from imgsearch.search.query.text import check_text
from imgsearch.web.errors import ApiError

MAX_BATCH = 100  # queries in one POST /api/search/batch

__all__ = ["EXAMPLE_FIELDS", "EXAMPLE_KINDS", "MAX_BATCH", "MAX_EXAMPLES", "decode_image", "json_examples",
           "multipart_examples"]


def decode_image(raw, name: str) -> bytes:
    """The bytes of a base64 image field (standard alphabet, padding optional); the request's size
    limit (MAX_CONTENT_LENGTH) caps it, the pixel limit applies when it is decoded."""
    bad = ApiError(400, "invalid_image", f"{name}: image must be base64 text of an image file (standard "
                                         f"alphabet), got {quote(raw, 40)}")
    if not isinstance(raw, str) or not raw:
        raise bad
    text = raw.strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise bad from None


def _id(value, name: str) -> Example:
    return Example("id", _checked_id(value, name, text=False), name=name)


def _checked_id(value, name: str, *, text: bool) -> int:
    try:
        return id_field(value, "id", text=text)
    except InvalidFieldError as exc:
        raise ApiError(400, "invalid_id", f"{name}: {exc}") from None


def _vector(value, name: str) -> Example:
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                              for x in value):
        raise ApiError(400, "invalid_vector", f"{name}: vector must be a list of numbers, got {quote(value, 40)}")
    return Example("vector", value, name=name)


def _image(value, name: str) -> Example:
    return Example("image", decode_image(value, name), name=name)


def _text(value, name: str) -> Example:
    return Example("text", check_text(value, name), name=name)


# kind field -> (value, name) -> Example
EXAMPLE_KINDS: dict[str, Callable[[object, str], Example]] = {"id": _id, "vector": _vector, "image": _image,
                                                              "text": _text}
EXAMPLE_FIELDS = ("weight",)  # what any example may carry besides its kind field


def _example(item, name: str) -> Example:
    kinds = ", ".join(EXAMPLE_KINDS)
    if not isinstance(item, dict):
        raise ApiError(400, "invalid_example", f"{name} must be an object with one of {kinds}, such as "
                                               f"{{\"id\": 3}}, got {quote(item, 40)}")
    given = [key for key in item if key in EXAMPLE_KINDS]
    if len(given) != 1:
        raise ApiError(400, "invalid_example", f"{name} must have exactly one of {kinds}, got "
                                               f"{', '.join(given) or 'none'}")
    unknown = [key for key in item if key not in EXAMPLE_KINDS and key not in EXAMPLE_FIELDS]
    if unknown:
        raise ApiError(400, "invalid_example", f"{name}: unknown field {quote(unknown[0], 40)}; an example has "
                                               f"one of {kinds} and may have {', '.join(EXAMPLE_FIELDS)}")
    example = EXAMPLE_KINDS[given[0]](item[given[0]], name)
    weight = item.get("weight", 1.0)
    try:
        check_weight(weight, name)
    except InvalidInputError as exc:
        raise ApiError(400, "invalid_weight", str(exc)) from None
    return Example(example.kind, example.value, float(weight), name)


def _checked(positive: list[Example], negative: list[Example]) -> tuple[list[Example], list[Example]]:
    try:
        return check_examples(positive, negative)
    except InvalidInputError as exc:
        raise ApiError(400, "invalid_examples", str(exc)) from None


def json_examples(body: dict) -> tuple[list[Example], list[Example]]:
    """The ``positive`` and ``negative`` lists of a JSON query."""
    lists = {}
    for side in ("positive", "negative"):
        items = body.get(side, [])
        if not isinstance(items, list):
            raise ApiError(400, "invalid_examples", f"{side} must be a list of examples such as [{{\"id\": 3}}], "
                                                    f"got {quote(items, 40)}")
        if len(items) > MAX_EXAMPLES:  # before a single one is decoded
            raise ApiError(400, "invalid_examples", f"a query may have at most {MAX_EXAMPLES} examples, "
                                                    f"got {len(items)} in {side}")
        lists[side] = [_example(item, f"{side}[{i}]") for i, item in enumerate(items)]
    return _checked(lists["positive"], lists["negative"])


def multipart_examples(files, form) -> tuple[list[Example], list[Example]]:
    """Multipart examples: image files in the fields ``positive`` and ``negative`` (several each), and
    indexed ids as text fields of the same names; weights are 1."""
    lists = {}
    for side in ("positive", "negative"):
        examples = [Example("image", f.read(), name=f"{side} file {f.filename or 'upload'}")
                    for f in files.getlist(side)]
        for i, raw in enumerate(form.getlist(side)):
            row_id = _checked_id(raw, f"{side} (a text field: an indexed id)", text=True)
            examples.append(Example("id", row_id, name=f"{side} id {row_id}"))
        lists[side] = examples
    return _checked(lists["positive"], lists["negative"])
