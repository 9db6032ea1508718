"""``POST /api/search/batch``: several search queries in one request, answered in order.

Each query is what ``POST /api/search`` takes as JSON; one that fails is answered by its error
object (``{"error": {"code", "message"}, "status"}``, the one error contract's shape, with the status
that query alone would have had) in its place, and the others are still answered: the batch is 200.
A query that meets the server's own problem or a bug (any other exception) gets the 500 entry a lone
query would get (``internal_error``, its traceback logged), not the whole batch.  The whole batch runs
on one index version.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from imgsearch.search.errors import ImgsearchError
from imgsearch.web.api import engine, hits_json, json_body, query_of_json, search_hits
from imgsearch.web.errors import GENERIC, ApiError, error_of
from imgsearch.web.examples import MAX_BATCH

batch = Blueprint("batch", __name__, url_prefix="/api")
log = logging.getLogger(__name__)


@batch.post("/search/batch")
def search_batch():
    started = time.perf_counter()
    eng = engine()
    body = json_body()
    if not isinstance(body, dict) or "queries" not in body:
        raise ApiError(400, "invalid_batch", "send a JSON object {\"queries\": [...]}, each query what "
                                             "POST /api/search takes as JSON")
    queries = body["queries"]
    if not isinstance(queries, list):
        raise ApiError(400, "invalid_batch", "queries must be a list of query objects")
    if not queries:
        raise ApiError(400, "invalid_batch", "a batch needs at least one query")
    if len(queries) > MAX_BATCH:
        raise ApiError(413, "batch_too_large", f"a batch may hold at most {MAX_BATCH} queries, got {len(queries)}: "
                                               "split it")
    results = []
    for n, item in enumerate(queries):
        try:
            hits = search_hits(eng, query_of_json(item))[0]
        except Exception as exc:  # noqa: BLE001 - one query's failure is its own entry, whatever it is
            failure = (error_of(exc) if isinstance(exc, ImgsearchError) else
                       (exc.code or 500, "http_error", exc.description or exc.name) if isinstance(exc, HTTPException)
                       else None)
            if failure is None:  # the server's own problem or a bug: what a lone query gets, logged
                log.error("batch query %d of %d failed", n, len(queries), exc_info=exc)
                failure = 500, "internal_error", GENERIC
            status, code, message = failure
            results.append({"error": {"code": code, "message": message}, "status": status})
        else:
            results.append(hits_json(eng, hits))
    return jsonify(results=results, backbone=eng.backbone, took_ms=round((time.perf_counter() - started) * 1000, 2))
