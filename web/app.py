"""The application factory."""

from __future__ import annotations

import logging
import os
import threading

from flask import Flask

log = logging.getLogger(__name__)

DEFAULTS = {
    "INDEX_DIR": None,  # the index folder to serve; else $IMGSEARCH_INDEX
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,  # uploads over this get 413
    # query images declaring more pixels get 413 before a pixel is decoded (decompression bombs);
    # 50 megapixels takes an 8000 x 6000 photo
    "MAX_IMAGE_PIXELS": 50_000_000,
    # never debug mode, whatever FLASK_DEBUG says: the server must not run with it in production
    "DEBUG": False,
    "DEFAULT_K": 10,
    "THUMBNAIL_SIZE": 256,
    "WARM_UP": True,  # load the CNN at start-up, so the first query-by-image is not slow
    # seconds between checks (one stat) for a newly published version of the index, which is then
    # opened in the background and swapped in; 0: on every request; None: serve the first version only
    "RELOAD_INTERVAL": 1.0,
    # the production server (web/server.py, imgsearch serve): limits chosen to hold against floods
    "SERVER_THREADS": 8,  # request threads; they share one loaded model
    "CONNECTION_LIMIT": 1000,  # open connections, idle ones included, before new ones wait
    "CHANNEL_TIMEOUT": 30,  # seconds an idle or trickling connection is kept
    # thumbnails: a JPEG is decoded at reduced scale; an image of another format declaring more pixels
    # than this is not previewed (413), since it would be decoded whole; at most THUMBNAIL_DECODES at once
    "THUMBNAIL_MAX_PIXELS": 25_000_000,
    "THUMBNAIL_DECODES": 2,
    # explanations decode their images whole (a 49 MP PNG: ~150 MB of pixels) and run the model: at most this
    # many at once (POST /api/explain waits, then 503 busy)
    "EXPLAIN_DECODES": 2,
    # {"url": ...} queries: off, since the server then fetches what its clients name (search/query/remote.py guards
    # against reaching its own network); URL_QUERY_ALLOW_NETWORKS: CIDRs allowed although private or loopback
    "ALLOW_URL_QUERIES": False,
    "URL_QUERY_ALLOW_NETWORKS": (),
    "URL_QUERY_MAX_BYTES": None,  # None: MAX_CONTENT_LENGTH, as an upload
    "URL_QUERY_TIMEOUT": 10.0,  # seconds for the whole fetch, redirects included
    # URL fetches at once, beyond which a URL query gets 503 busy at once (web/url_fetches.py); a trickling remote
    # server holds a request thread for URL_QUERY_TIMEOUT. None: a quarter of SERVER_THREADS (at least 1)
    "MAX_URL_FETCHES": None,
    # API keys (web/keys.py, web/auth.py): the keys file (None: $IMGSEARCH_KEYS or ~/.config/imgsearch/keys.json),
    # and whether every /api request needs a key; off loopback (BOUND_HOST, set by web/server.py) writes always do
    "KEYS_FILE": None,
    "REQUIRE_KEY": False,
    # the names clients reach the server by, besides localhost, 127.0.0.1, [::1] and BOUND_HOST ("*": any), and the
    # other sites whose pages may post to it (web/hosts.py): the defence against DNS rebinding and cross-site posts
    "ALLOWED_HOSTS": (),
    "ALLOWED_ORIGINS": (),
    "BOUND_HOST": None,
}

# settings that must be whole numbers of at least 1
_POSITIVE = ("MAX_CONTENT_LENGTH", "SERVER_THREADS", "CONNECTION_LIMIT", "CHANNEL_TIMEOUT", "THUMBNAIL_MAX_PIXELS",
             "THUMBNAIL_DECODES", "EXPLAIN_DECODES")


def create_app(config: dict | None = None, *, engine=None) -> Flask:
    """Build the app over one index folder.

    ``config`` overrides DEFAULTS (``INDEX_DIR`` first of all); ``engine`` lets a
    caller share an already open ``SearchEngine``.  The index is opened here,
    once per process (once per worker under gunicorn/waitress); versions the
    indexer publishes later are picked up while serving (``RELOAD_INTERVAL``).
    """
    from imgsearch.search.engine import SearchEngine, check_max_pixels
    from imgsearch.search.errors import InvalidInputError, quote
    from imgsearch.search.reloading import ReloadingEngine
    from imgsearch.search.query.remote import UrlPolicy
    from imgsearch.web.api import api
    from imgsearch.web.auth import install_keys
    from imgsearch.web.batch import batch
    from imgsearch.web.duplicates_jobs import duplicates_jobs
    from imgsearch.web.errors import register_error_handlers
    from imgsearch.web.explain import explain_api
    from imgsearch.web.fields import StrictJSONProvider
    from imgsearch.web.heads_api import heads_api
    from imgsearch.web.hosts import install_host_checks
    from imgsearch.web.pages import pages
    from imgsearch.web.review_api import review_api
    from imgsearch.web.security import add_security_headers
    from imgsearch.web.url_fetches import install_url_fetches

    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    check_max_pixels(app.config["MAX_IMAGE_PIXELS"], "MAX_IMAGE_PIXELS")
    for name in _POSITIVE:
        value = app.config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a whole number >= 1, got {quote(value)}")
    if not isinstance(app.config["ALLOW_URL_QUERIES"], bool):
        raise InvalidInputError(f"ALLOW_URL_QUERIES must be True or False, got {quote(app.config['ALLOW_URL_QUERIES'])}")
    url_policy = UrlPolicy(max_bytes=app.config["URL_QUERY_MAX_BYTES"] or app.config["MAX_CONTENT_LENGTH"],
                           timeout=app.config["URL_QUERY_TIMEOUT"],
                           allow_networks=app.config["URL_QUERY_ALLOW_NETWORKS"])
    if engine is None:
        index_dir = app.config["INDEX_DIR"] or os.environ.get("IMGSEARCH_INDEX")
        if not index_dir:
            raise InvalidInputError("no index to serve: pass INDEX_DIR or set IMGSEARCH_INDEX=/path/to/index")
        engine = SearchEngine.open(index_dir)
    if app.config["RELOAD_INTERVAL"] is not None and not isinstance(engine, ReloadingEngine):
        engine = ReloadingEngine(engine, interval=app.config["RELOAD_INTERVAL"])
    if app.config["WARM_UP"]:
        engine.warm_up()
    app.extensions["imgsearch"] = engine
    app.extensions["imgsearch_url_policy"] = url_policy
    install_url_fetches(app)
    app.extensions["imgsearch_thumbnail_slots"] = threading.BoundedSemaphore(app.config["THUMBNAIL_DECODES"])
    app.extensions["imgsearch_explain_slots"] = threading.BoundedSemaphore(app.config["EXPLAIN_DECODES"])
    register_error_handlers(app)
    install_host_checks(app)
    install_keys(app)
    add_security_headers(app)
    app.register_blueprint(api)
    app.register_blueprint(batch)
    app.register_blueprint(duplicates_jobs)
    app.register_blueprint(explain_api)
    app.register_blueprint(heads_api)
    app.register_blueprint(review_api)
    app.register_blueprint(pages)
    log.info("serving %s (%d images, %s, debug %s)", engine.store.root, len(engine), engine.backbone,
             "on" if app.debug else "off")
    return app
