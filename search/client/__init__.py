"""``SearchClient``: the Python client of the JSON API (``http_client``), its reply types and its transport."""

from imgsearch.search.client.http_client import SearchAPIError, SearchClient

__all__ = ["SearchAPIError", "SearchClient"]
