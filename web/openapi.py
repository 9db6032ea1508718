"""OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from search.duplicates import KEEP_RULES
from search.engine import MAX_K
from search.examples import MAX_EXAMPLES, MAX_WEIGHT, NEGATIVE_WEIGHT, STRATEGIES
from web.examples import EXAMPLE_FIELDS, MAX_BATCH


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_spec(dim: int, max_upload_bytes: int) -> dict:
    k = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10}
    top = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5}
    head = {"type": "string", "description": "a trained head's name (GET /api/info lists them)"}
    vector = {"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim}
    window = {
        "min_score": {"type": "number", "minimum": -1, "maximum": 1,
                      "description": f"only results scoring at least this (a cosine); without k, every one up to "
                                     f"rank {MAX_K}"},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_K - 1, "default": 0,
                   "description": f"skip this many of the best results (ranks past {MAX_K} are never served)"},
    }
    query_ref = {"$ref": "#/components/schemas/SearchQuery"}
    spec = _spec(k, top, head, vector, window, query_ref, max_upload_bytes)
    spec["paths"].update(_heads_paths(vector))
    spec["components"]["schemas"]["Head"] = _HEAD_SCHEMA
    return spec


def _spec(k, top, head, vector, window, query_ref, max_upload_bytes) -> dict:
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
                        "description": "an image in 'image', or examples: image files in 'positive' and "
                                       "'negative' (several each) and indexed ids as text fields of those names",
                        "properties": {"image": {"type": "string", "format": "binary",
                                                 "description": f"at most {max_upload_bytes} bytes"},
                                       "positive": {"type": "array", "items": {"type": "string", "format": "binary"}},
                                       "negative": {"type": "array", "items": {"type": "string", "format": "binary"}},
                                       "strategy": {"type": "string", "enum": list(STRATEGIES)},
                                       "k": k, "head": head, **window}}},
                    "application/json": {"schema": query_ref},
                }},
                "responses": {
                    "200": {"description": "Results, best first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}}},
                    "400": _error("Not an image, missing field, bad k, min_score, offset, id, vector, head, example, "
                                  "weight or strategy"),
                    "404": _error("Unknown id"),
                    "409": _error("The head named is damaged: retrain it"),
                    "413": _error("Upload over the size limit, or an image over the pixel limit"),
                },
            }},
            "/api/search/batch": {"post": {
                "summary": "Several searches in one request, answered in order",
                "description": "Each query is what POST /api/search takes as JSON. A query that fails is answered "
                               "in its place by its error object and HTTP status; the others are still answered.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/BatchRequest"}}}},
                "responses": {
                    "200": {"description": "One answer per query, in order: its results, or its error",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchResponse"}}}},
                    "400": _error("Not {\"queries\": [...]}, or no query"),
                    "413": _error(f"More than {MAX_BATCH} queries, or a body over {max_upload_bytes} bytes"),
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
            "Example": {
                "type": "object", "minProperties": 1,
                "description": "exactly one of id, vector, image; with an optional weight",
                "properties": {"id": {"type": "integer"}, "vector": vector,
                               "image": {"type": "string", "contentEncoding": "base64",
                                         "description": "an image file, base64; the upload limits apply"},
                               **{f: {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WEIGHT, "default": 1}
                                  for f in EXAMPLE_FIELDS}}},
            "SearchQuery": {
                "type": "object",
                "description": "one of id, vector, image (base64) or positive (with negative) examples. Examples: "
                               "'rocchio' searches by the weighted mean of the positives minus "
                               f"{NEGATIVE_WEIGHT} x the weighted mean of the negatives, re-normalised (scores are "
                               "cosines to it); 'best' scores each image by its best positive (weight x cosine) "
                               "and leaves out those more like a negative than like that positive. Examples "
                               "given by id are not among the results.",
                "properties": {"id": {"type": "integer"}, "vector": vector,
                               "image": {"type": "string", "contentEncoding": "base64"},
                               "positive": {"type": "array", "minItems": 1, "maxItems": MAX_EXAMPLES,
                                            "items": {"$ref": "#/components/schemas/Example"}},
                               "negative": {"type": "array", "items": {"$ref": "#/components/schemas/Example"}},
                               "strategy": {"type": "string", "enum": list(STRATEGIES), "default": "rocchio"},
                               "k": k, "head": head, **window}},
            "BatchRequest": {"type": "object", "required": ["queries"], "properties": {
                "queries": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": query_ref}}},
            "BatchResponse": {"type": "object", "required": ["results"], "properties": {
                "results": {"type": "array", "items": {"oneOf": [
                    {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                    {"allOf": [{"$ref": "#/components/schemas/Error"},
                               {"type": "object", "required": ["status"],
                                "properties": {"status": {"type": "integer"}}}]}]}},
                "took_ms": {"type": "number"}, "backbone": {"type": "string"}}},
            "Hit": {"type": "object", "required": ["id", "path", "label", "score", "thumbnail_url"],
                    "properties": {"id": {"type": "integer"}, "path": {"type": "string"},
                                   "label": {"type": "string"}, "score": {"type": "number"},
                                   "thumbnail_url": {"type": "string"}}},
            "SearchResponse": {"type": "object", "required": ["results", "took_ms", "backbone"],
                               "properties": {"results": {"type": "array",
                                                          "items": {"$ref": "#/components/schemas/Hit"}},
                                              "took_ms": {"type": "number"}, "backbone": {"type": "string"},
                                              "head": {"type": ["string", "null"]},
                                              "offset": {"type": "integer"},
                                              "min_score": {"type": ["number", "null"]},
                                              "query": {"type": "object"}}},
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


_HEAD_SCHEMA = {
    "type": "object", "required": ["name", "classes", "model", "metrics"],
    "properties": {
        "name": {"type": "string"}, "classes": {"type": "array", "items": {"type": "string"}},
        "model": {"type": "string", "enum": ["softmax", "svm"]},
        "calibration": {"type": "object", "description": "how probabilities were calibrated (the SVM: a temperature)"},
        "search_weight": {"type": "number"}, "created": {"type": "string"}, "labels_source": {"type": "string"},
        "metrics": {"type": "object", "description": "examples_per_class, warnings, folds, measured_examples, and "
                                                     "validation / knn_validation (cross-validated; null when no "
                                                     "class has 2 examples)"}}}


def _heads_paths(vector: dict) -> dict:
    """POST/GET/DELETE /api/heads (web/heads_api.py)."""
    training = {"type": "object", "properties": {"allowed": {"type": "boolean"}, "why": {"type": "string"}}}
    head_ref = {"$ref": "#/components/schemas/Head"}
    example = {"oneOf": [{"type": "integer", "description": "an indexed id"},
                         {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                         {"type": "object", "properties": {"vector": vector}, "required": ["vector"]},
                         {"type": "object", "properties": {"image": {"type": "string", "contentEncoding": "base64"}},
                          "required": ["image"]}]}
    refused = _error("Training is not allowed on this server (loopback only, or ALLOW_TRAINING); the message says why")
    return {
        "/api/heads": {
            "get": {"summary": "The index's heads, and whether this server trains them",
                    "responses": {"200": {"description": "heads and the training permission", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "heads": {"type": "array", "items": head_ref}, "training": training,
                            "models": {"type": "array", "items": {"type": "string"}},
                            "default_model": {"type": "string"}}}}}}}},
            "post": {
                "summary": "Teach a head from a few examples per class (trained in seconds, served at once)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["name", "examples"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                        "model": {"type": "string", "enum": ["softmax", "svm"]},
                        "search_weight": {"type": "number", "minimum": 0, "maximum": 10, "default": 1},
                        "examples": {"type": "object", "minProperties": 2, "description": "class name -> examples",
                                     "additionalProperties": {"type": "array", "minItems": 1, "items": example}}}}}}},
                "responses": {
                    "201": {"description": "The head, with its cross-validated metrics", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "head": head_ref, "training": training}}}}},
                    "400": _error("Bad name, model or examples (an unknown id, an empty class, one class)"),
                    "403": refused,
                    "409": _error("Another command is writing the index; try again"),
                    "413": _error("Too many examples in one request"),
                }},
        },
        "/api/heads/{name}": {
            "get": {"summary": "One head", "parameters": [{"name": "name", "in": "path", "required": True,
                                                           "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "the head", "content": {"application/json": {}}},
                                  "400": _error("No such head")}},
            "delete": {"summary": "Delete a head", "parameters": [{"name": "name", "in": "path", "required": True,
                                                                   "schema": {"type": "string"}}],
                       "responses": {"200": {"description": "deleted", "content": {"application/json": {}}},
                                     "403": refused, "404": _error("No such head")}},
        },
    }
