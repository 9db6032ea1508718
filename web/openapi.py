"""OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from search.duplicates import KEEP_RULES
from search.engine import MAX_K
from search.filters import COMPARISONS, NUMBER_FIELDS, TEXT_FIELDS, TIME_FIELDS


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_spec(dim: int, max_upload_bytes: int) -> dict:
    k = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10}
    top = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5}
    head = {"type": "string", "description": "a trained head's name (GET /api/info lists them)"}
    vector = {"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim}
    flt = {"$ref": "#/components/schemas/Filter"}
    form_filter = {"type": "string", "description": "a Filter as JSON text"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "imgsearch", "version": "1",
                 "description": "Image similarity search over one index folder."},
        "paths": {
            "/api/search": {"post": {
                "summary": "Nearest images to an uploaded image, an indexed id or a vector",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["image"],
                        "properties": {"image": {"type": "string", "format": "binary",
                                                 "description": f"at most {max_upload_bytes} bytes"},
                                       "k": k, "head": head, "filter": form_filter}}},
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "required": ["id"],
                         "properties": {"id": {"type": "integer"}, "k": k, "head": head, "filter": flt}},
                        {"type": "object", "required": ["vector"],
                         "properties": {"vector": vector, "k": k, "head": head, "filter": flt}},
                    ]}},
                }},
                "responses": {
                    "200": {"description": "Results, best first (with a filter: only images it selects; none "
                                           "selected: empty results and a note)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}}},
                    "400": _error("Not an image, missing field, bad k, id, vector or head; a filter with an unknown "
                                  "field, operator or label (invalid_filter, unknown_label)"),
                    "404": _error("Unknown id"),
                    "409": _error("The head named is damaged: retrain it"),
                    "413": _error("Upload over the size limit, or an image over the pixel limit"),
                },
            }},
            "/api/classify": {"post": {
                "summary": "Class probabilities of a trained head for an uploaded image, an indexed id or a vector",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["image"],
                        "properties": {"image": {"type": "string", "format": "binary"}, "head": head,
                                       "top": top}}},
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "required": ["id"],
                         "properties": {"id": {"type": "integer"}, "head": head, "top": top}},
                        {"type": "object", "required": ["vector"],
                         "properties": {"vector": vector, "head": head, "top": top}},
                    ]}},
                }},
                "responses": {
                    "200": {"description": "Predictions, most probable first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClassifyResponse"}}}},
                    "400": _error("Not an image, missing field, unknown head, bad top, id or vector"),
                    "404": _error("Unknown id"),
                    "409": _error("The head named is damaged: retrain it"),
                    "413": _error("Upload over the size limit, or an image over the pixel limit"),
                },
            }},
            "/api/images/{id}": {"get": {
                "summary": "An indexed image as JPEG",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "size", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 16, "maximum": 1024},
                     "description": "fit the image in size x size pixels"},
                ],
                "responses": {"200": {"description": "JPEG image", "content": {"image/jpeg": {}}},
                              "400": _error("Bad size"), "404": _error("Unknown id or file gone"),
                              "413": _error("Too large to preview (not a JPEG, over THUMBNAIL_MAX_PIXELS)"),
                              "503": _error("Too many images being decoded at once: try again")},
            }},
            "/api/duplicates": {"get": {
                "summary": "Groups of near-duplicate images and of exact copies, a page at a time",
                "description": "Every member of a group scores at least the threshold against the group's keeper, "
                               "or (keypoints on) scores at least 0.55 and its file's keypoints match the keeper's "
                               "under one transform (no chaining); computed once per index version, threshold, "
                               "keeper rule and keypoints setting.",
                "parameters": [
                    {"name": "threshold", "in": "query", "required": False,
                     "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                     "description": "cosine score against the keeper (default: the calibrated one)"},
                    {"name": "keep", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": list(KEEP_RULES), "default": "largest"},
                     "description": "the keeper: most pixels (then largest file), fewest, indexed first, last"},
                    {"name": "keypoints", "in": "query", "required": False,
                     "schema": {"type": "boolean", "default": True},
                     "description": "confirm pairs below the threshold by matching keypoints (reads the files); "
                                    "false: cosine scores only"},
                    {"name": "offset", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}},
                ],
                "responses": {
                    "200": {"description": "One page of groups, in order of their keeper's id",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DuplicatesResponse"}}}},
                    "400": _error("Bad threshold, keep, offset or limit"),
                },
            }},
            "/api/info": {"get": {"summary": "Backbone, size and limits of the index",
                                  "responses": {"200": {"description": "Index description",
                                                        "content": {"application/json": {}}}}}},
            "/api/health": {"get": {"summary": "Liveness",
                                    "responses": {"200": {"description": "ok",
                                                          "content": {"application/json": {}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Hit": {"type": "object", "required": ["id", "path", "label", "score", "thumbnail_url"],
                    "properties": {"id": {"type": "integer"}, "path": {"type": "string"},
                                   "label": {"type": "string"}, "score": {"type": "number"},
                                   "thumbnail_url": {"type": "string"}}},
            "SearchResponse": {"type": "object", "required": ["results", "took_ms", "backbone"],
                               "properties": {"results": {"type": "array",
                                                          "items": {"$ref": "#/components/schemas/Hit"}},
                                              "took_ms": {"type": "number"}, "backbone": {"type": "string"},
                                              "head": {"type": ["string", "null"]},
                                              "query": {"type": "object"},
                                              "filter": flt, "matched": {"type": "integer",
                                                                         "description": "images the filter selects"},
                                              "note": {"type": "string"}}},
            "Filter": _filter_schema(),
            "DuplicateGroup": {"type": "object",
                               "required": ["group", "ids", "paths", "scores", "keep", "exact", "thumbnail_urls"],
                               "properties": {"group": {"type": "integer"},
                                              "ids": {"type": "array", "items": {"type": "integer"}},
                                              "paths": {"type": "array", "items": {"type": "string"}},
                                              "scores": {"type": "array", "items": {"type": "number"}},
                                              "keep": {"type": "integer"}, "exact": {"type": "boolean"},
                                              "thumbnail_urls": {"type": "array", "items": {"type": "string"}}}},
            "DuplicatesResponse": {"type": "object",
                                   "required": ["groups", "total", "offset", "limit", "threshold", "keep"],
                                   "properties": {"groups": {"type": "array",
                                                             "items": {"$ref": "#/components/schemas/DuplicateGroup"}},
                                                  "total": {"type": "integer"}, "offset": {"type": "integer"},
                                                  "limit": {"type": "integer"}, "threshold": {"type": "number"},
                                                  "keep": {"type": "string"}, "generation": {"type": "integer"},
                                                  "images": {"type": "integer"}, "method": {"type": "string"},
                                                  "took_ms": {"type": "number"}}},
            "ClassifyResponse": {"type": "object", "required": ["head", "predictions", "took_ms"],
                                 "properties": {"head": {"type": "string"}, "took_ms": {"type": "number"},
                                                "predictions": {"type": "array", "items": {
                                                    "type": "object", "required": ["class", "probability"],
                                                    "properties": {"class": {"type": "string"},
                                                                   "probability": {"type": "number"}}}}}},
        }},
    }


def _filter_schema() -> dict:
    """The ``filter`` object: all conditions hold; a list means any of its values (search/filters.py)."""
    texts = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}

    def bounds(kind: dict) -> dict:
        return {"oneOf": [kind, {"type": "array", "items": kind, "minItems": 1},
                          {"type": "object", "minProperties": 1, "additionalProperties": False,
                           "properties": {op: kind for op in COMPARISONS}}]}

    when = {"oneOf": [{"type": "number"}, {"type": "string", "description": "ISO date or date-time (UTC)"}]}
    return {"type": "object", "additionalProperties": False,
            "description": "Search only images whose stored metadata matches: every field given must hold; "
                           "null (unknown) metadata never matches.  Times are ISO dates or seconds since 1970; "
                           "taken is the camera's EXIF clock.",
            "properties": {**{name: texts for name in TEXT_FIELDS}, "path_prefix": texts,
                           **{name: bounds({"type": "number"}) for name in NUMBER_FIELDS},
                           **{name: bounds(when) for name in TIME_FIELDS}}}
