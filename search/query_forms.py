"""Query forms the engine answers through its own searches: an http(s) URL's image."""

from __future__ import annotations

from imgsearch.search.filters import as_filter
from imgsearch.search.ranking import window
from imgsearch.search.regions import parse_box


def search_by_url(engine, url: str, k: int | None = None, *, head: str | None = None, max_pixels: int | None = None,
                  box=None, policy=None, min_score: float | None = None, offset: int = 0, filter=None) -> list:
    """Nearest images to the image at an http(s) ``url``, fetched through the SSRF guard of
    search/urls.py (``policy``: its limits and allowed networks, default ``UrlPolicy()``)."""
    from imgsearch.search.urls import fetch_image

    window(k, offset, min_score)
    box, filter = None if box is None else parse_box(box), as_filter(filter)
    if head is not None:
        engine.head(head)  # a bad head, window, filter or box is refused before anything is fetched
    return engine.search_image(fetch_image(url, policy), k, head=head, max_pixels=max_pixels, box=box,
                               min_score=min_score, offset=offset, filter=filter)
