"""Flask web front end and JSON API over one index folder: ``create_app(...)``."""

from imgsearch.web.app import create_app

__all__ = ["create_app"]
