"""Flask web front end and JSON API (see issue 3)."""
