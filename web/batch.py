"""``POST /api/search/batch``: several search queries in one request, answered in order.

Each query is what ``POST /api/search`` takes as JSON; one that fails is answered by its error
object (``{"error": {"code", "message"}, "status"}``, the one error contract's shape) in its place,
and the others are still answered.  The whole batch runs on one index version.
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from imgsearch.search.errors import ImgsearchError
from imgsearch.web.api import _hit_json, engine, json_body, query_of_json, search_hits
from imgsearch.web.errors import ApiError, error_of
from imgsearch.web.examples import MAX_BATCH

batch = Blueprint("batch", __name__, url_prefix="/api")


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
    for item in queries:
        try:
            hits = search_hits(eng, query_of_json(item))[0]
        except ImgsearchError as exc:
            failure = error_of(exc)
            if failure is None:
                raise  # the server's own problem fails the whole request (500), as it would one query
            status, code, message = failure
            results.append({"error": {"code": code, "message": message}, "status": status})
        else:
            results.append([_hit_json(h) for h in hits])
    return jsonify(results=results, backbone=eng.backbone, took_ms=round((time.perf_counter() - started) * 1000, 2))
