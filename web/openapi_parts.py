"""Parts of the OpenAPI document (web/openapi.py): the error responses' words, /api/explain, /api/health."""

from __future__ import annotations

CONFLICT = ("The head named is damaged: retrain it (head_damaged); or an indexed image's file changed since it "
             "was indexed (file_changed; the message says what changed): re-index to pick it up")
DAMAGED = ("A shard of the index this query reads is damaged (shard_damaged, naming it): queries that do not read "
            "it are answered; GET /api/health says degraded")
HEALTH = ("status 'ok', or 'degraded' with the reason (a shard found damaged, a file of the version changed or "
           "gone on disk, a newly published version that cannot be opened); 200 either way, since every query "
           "not reading the damage is answered")
HEALTH_SCHEMA = {"type": "object", "required": ["status", "count"], "properties": {
    "status": {"type": "string", "enum": ["ok", "degraded"]}, "count": {"type": "integer"},
    "reason": {"type": "string", "description": "degraded: every reason, in one line"},
    "reasons": {"type": "array", "items": {"type": "string"}}}}


def error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def explain_path(max_upload_bytes: int) -> dict:
    """POST /api/explain (web/explain.py): a pair's score split over both images' cells."""
    result_id = {"type": "integer", "description": "the result to explain: an indexed image's id"}
    head = {"type": "string", "description": "split the head-aware score; the head's part is head_share"}
    box = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 4, "maxItems": 4,
           "description": "explain this region of the query, [x0, y0, x1, y1] fractions, as a search with this box "
                          "scores it (the query grid then covers the region's centred square); a bad one is 400 "
                          "invalid_box, never ignored"}
    box_field = {"type": "string", "description": "a region, as 'x0,y0,x1,y1' (see box in the JSON body)"}
    grid = {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
            "description": "signed shares of the score, rows first from the top, over the centred square of the "
                           "image the model sees (7 x 7 for efficientnet-lite0 at 224 px)"}
    return {"post": {
        "summary": "Why a result matches: its score split over the query's and the result's feature-map cells",
        "description": "Each grid adds up (with head_share) to the score search gives the pair. Costs one forward "
                       "pass for the result's image and one for the query's (an upload, or an id's file), fewer "
                       "when their maps are cached.",
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image", "id"],
                "properties": {"image": {"type": "string", "format": "binary",
                                         "description": f"the query, at most {max_upload_bytes} bytes"},
                               "id": result_id, "head": head, "box": box_field}}},
            "application/json": {"schema": {
                "type": "object", "required": ["query", "id"],
                "properties": {"query": {"type": "object", "required": ["id"],
                                         "properties": {"id": {"type": "integer"}}},
                               "id": result_id, "head": head, "box": box}}},
        }},
        "responses": {
            "200": {"description": "The score and its split", "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["score", "query_shares", "result_shares", "query_sum", "result_sum", "grid", "id"],
                "properties": {"score": {"type": "number"}, "query_shares": grid, "result_shares": grid,
                               "query_sum": {"type": "number"}, "result_sum": {"type": "number"},
                               "grid": {"type": "array", "items": {"type": "integer"}, "description": "[rows, cols]"},
                               "head": {"type": ["string", "null"]}, "head_share": {"type": "number"},
                               "id": {"type": "integer"}, "query_id": {"type": ["integer", "null"]},
                               "forward_passes": {"type": "integer"},
                               "residual": {"type": "object", "description": "the part of the score each map "
                                            "did not account for (int8), spread evenly over its cells"},
                               "box": {"type": ["array", "null"], "items": {"type": "number"},
                                       "description": "the query's region explained, null: the whole image"},
                               "query": {"type": "object"}, "thumbnail_url": {"type": "string"},
                               "took_ms": {"type": "number"}}}}}},
            "400": error_response("Not an image, missing field, a vector query, bad id, head or box (invalid_box); "
                                  "image_queries_unsupported: the index holds vectors made elsewhere (no model to explain)"),
            "404": error_response("Unknown id, or an indexed image whose file is gone"),
            "409": error_response(CONFLICT),
            "413": error_response("Upload over the size limit, or an image over the pixel limit"),
            "503": error_response(DAMAGED + "; or more explanations decoding at once than EXPLAIN_DECODES (busy)"),
        },
    }}
