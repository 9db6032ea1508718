"""Text queries (issue 33): words embedded by the text tower of the index's image-text encoder (a SigLIP preset),
searched like any query vector, with its window, filter and head.

``text_vectors`` is the one way a text becomes a vector here: the index's manifest must record a text tower
(else ``TextQueriesUnsupportedError``, a 400 / one line), the preset must be the very one the index was built
with (its SHA-256, as for image queries), and the vectors are the text tower's output, L2-normalised
(``indexer/model/text_encoder.py``).  A text is also one kind of example (``Example.of_text``) among a query's
positives and negatives (``search/query/examples.py``).
"""

from __future__ import annotations

import numpy as np

from imgsearch.indexer.errors import quote
from imgsearch.indexer.folder.manifest import check_compatible, check_text_queries, text_tower
from imgsearch.indexer.model.text_encoder import load_text_encoder
from imgsearch.search.errors import InvalidBoxError, InvalidFieldError

__all__ = ["MAX_TEXT", "check_text", "check_text_queries", "has_text_tower", "search_text", "text_vectors"]

MAX_TEXT = 1000  # characters of one text (a text tower reads a few dozen tokens: the rest would be cut anyway)


def check_text(value, name: str = "text") -> str:
    """``value`` as a query text: a string with a word in it, at most MAX_TEXT characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidFieldError("text", f"{name} must be some words such as \"a red car\", got {quote(value, 40)}")
    if len(value) > MAX_TEXT:
        raise InvalidFieldError("text", f"{name} may have at most {MAX_TEXT} characters, got {len(value)}: "
                                        "shorten it")
    return value


def has_text_tower(manifest: dict) -> bool:
    """Whether the index's encoder embeds words (the page shows its text box only then)."""
    return text_tower(manifest) is not None


def text_vectors(engine, texts: list[str]) -> np.ndarray:
    """(len(texts), D) unit vectors of ``texts`` in the index's embedding space."""
    check_text_queries(engine.manifest)
    encoder = load_text_encoder(engine.backbone)
    preset = encoder.preset
    check_compatible(engine.manifest, preset.name, preset.dim, str(engine.store.root), {"preset": preset.describe()})
    return encoder.encode([check_text(t) for t in texts])


def search_text(engine, text, query) -> list:
    """The results for the words ``text`` in the window of ``query`` (a checked ``Query``), with its filter and
    head; ``box`` is refused (it takes a region of an image)."""
    text = check_text(text)
    if query.box is not None:
        raise InvalidBoxError("box takes a region of one image: search an image, a url or an id with it, not a text")
    check_text_queries(engine.manifest)  # before a head is looked at or a model loaded: what to do instead
    if query.head is not None:
        engine.head(query.head)  # a bad head name fails before the text tower is loaded
    return engine.search_vector(text_vectors(engine, [text])[0], query=query)
