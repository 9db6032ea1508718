"""OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from imgsearch.search.duplicates.groups import KEEP_RULES
from imgsearch.search.engine import MAX_K
from imgsearch.search.query.examples import MAX_EXAMPLES, MAX_WEIGHT, NEGATIVE_WEIGHT, STRATEGIES
from imgsearch.search.query.filters import COMPARISONS, ISO_PATTERN, NUMBER_FIELDS, TEXT_FIELDS, TIME_FIELDS, TIME_FORMS
from imgsearch.search.query.text import MAX_TEXT
from imgsearch.web.examples import EXAMPLE_FIELDS, MAX_BATCH
from imgsearch.web.openapi_access import add_access_control
from imgsearch.web.openapi_duplicates import (DUPLICATE_EVIDENCE, DUPLICATES_JOB, DUPLICATES_JOB_PATHS, MEMBER_SIZE,
                                               review_paths)
from imgsearch.web.openapi_parts import CONFLICT, DAMAGED, HEALTH, HEALTH_SCHEMA, error_response, explain_path


def _query_errors(bad_request: str) -> dict:
    """The errors of a query by image, id, vector or URL (search and classify); ``bad_request``: its 400's words."""
    return {
        "400": error_response(bad_request),
        "403": error_response("A url query, and this server's ALLOW_URL_QUERIES is off (url_queries_disabled)"),
        "404": error_response("Unknown id, or (with a box) an indexed image whose file is gone"),
        "409": error_response(CONFLICT),
        "413": error_response("Upload over the size limit, or an image over the pixel limit"),
        "503": error_response("A url query while MAX_URL_FETCHES fetches run (busy; Retry-After says when); or "
                              + DAMAGED),
    }

def openapi_spec(dim: int, max_upload_bytes: int) -> dict:
    k = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10}
    top = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5}
    head = {"type": "string", "description": "a trained head's name (GET /api/info lists them)"}
    vector = {"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim,
              "description": "finite numbers, not all zero, of any magnitude: normalised to unit length"}
    window = {
        "min_score": {"type": "number", "minimum": -1, "maximum": 1,
                      "description": f"only results scoring at least this (a cosine); without k, every one up to "
                                     f"rank {MAX_K}"},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_K - 1, "default": 0,
                   "description": f"skip this many of the best results (ranks past {MAX_K} are never served)"},
    }
    query_ref = {"$ref": "#/components/schemas/SearchQuery"}
    box = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 4, "maxItems": 4,
           "description": "search by this region: [x0, y0, x1, y1], fractions of the image's width and height "
                          "(as displayed, after its EXIF rotation) with x0 < x1 and y0 < y1; cropped from the "
                          "full-resolution image"}
    box_field = {"type": "string", "pattern": r"^\s*\[?[^,]+,[^,]+,[^,]+,[^,]+\]?\s*$",
                 "description": "a region, as 'x0,y0,x1,y1' (see box in the JSON body)"}
    url = {"type": "string", "format": "uri",
           "description": "an http(s) URL of the query image, fetched by the server if its ALLOW_URL_QUERIES "
                          "setting is on (else 403 url_queries_disabled); private, loopback, link-local, "
                          "multicast and reserved addresses are refused, after every redirect too (at most 3), "
                          "and so is a reply that is not an image or is over the upload limit "
                          "(400 url_not_allowed)"}
    flt = {"$ref": "#/components/schemas/Filter"}
    form_filter = {"type": "string", "description": "a Filter as JSON text"}
    spec = _spec(k, top, head, vector, window, query_ref, max_upload_bytes, box, box_field, url, flt, form_filter)
    spec["paths"].update(_heads_paths(vector))
    spec["paths"].update(DUPLICATES_JOB_PATHS)
    spec["components"]["schemas"].update(DuplicatesJob=DUPLICATES_JOB, MemberSize=MEMBER_SIZE)
    spec["paths"].update(review_paths())
    add_access_control(spec)
    spec["components"]["schemas"]["Head"] = _HEAD_SCHEMA
    spec["components"]["schemas"]["Health"] = HEALTH_SCHEMA
    return spec


def _spec(k, top, head, vector, window, query_ref, max_upload_bytes, box, box_field, url, flt, form_filter) -> dict:
    text = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
            "description": "words, embedded by the index's text tower (an index built with an image-text preset "
                           "such as SigLIP; else 400 text_queries_unsupported)"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "imgsearch", "version": "1",
                 "description": "Image similarity search over one index folder."},
        "paths": {
            "/api/search": {"post": {
                "summary": "Nearest images to an uploaded image, words (text), an indexed id or a vector",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["image"],
                        "description": "an image in 'image', words in 'text', or examples: image files in "
                                       "'positive' and 'negative' (several each) and indexed ids as text fields of "
                                       "those names",
                        "properties": {"image": {"type": "string", "format": "binary",
                                                 "description": f"at most {max_upload_bytes} bytes"},
                                       "text": text,
                                       "positive": {"type": "array", "items": {"type": "string", "format": "binary"}},
                                       "negative": {"type": "array", "items": {"type": "string", "format": "binary"}},
                                       "strategy": {"type": "string", "enum": list(STRATEGIES)},
                                       "k": k, "head": head, "box": box_field, "filter": form_filter, **window}}},
                    "application/json": {"schema": query_ref},
                }},
                "responses": {
                    "200": {"description": "Results, best first (with a filter: only images it selects; none "
                                           "selected: empty results and a note)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}}},
                    **_query_errors("Not an image, missing field, bad k, min_score, offset, id, vector, text, head, "
                                    "example, weight, strategy or box (invalid_box); a text query of an index whose "
                                    "encoder has no text tower (text_queries_unsupported); a filter with an "
                                    "unknown field, operator or label (invalid_filter, unknown_label); a URL refused "
                                    "(url_not_allowed, with the reason) or not fetched (url_fetch_failed)"),
                },
            }},
            "/api/search/batch": {"post": {
                "summary": "Several searches in one request, answered in order",
                "description": "Each query is what POST /api/search takes as JSON. A query that fails is answered "
                               "in its place by its error object and the HTTP status it would have had alone (a "
                               "bug or the server's own problem: 500 internal_error, logged); the others are "
                               "still answered, and the batch is 200.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/BatchRequest"}}}},
                "responses": {
                    "200": {"description": "One answer per query, in order: its results, or its error",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchResponse"}}}},
                    "400": error_response("Not {\"queries\": [...]}, or no query"),
                    "413": error_response(f"More than {MAX_BATCH} queries, or a body over {max_upload_bytes} bytes"),
                },
            }},
            "/api/classify": {"post": {
                "summary": "Class probabilities of a trained head for an uploaded image, an indexed id or a vector",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["image"],
                        "properties": {"image": {"type": "string", "format": "binary"}, "head": head,
                                       "top": top, "box": box_field}}},
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "required": ["id"],
                         "properties": {"id": {"type": "integer"}, "head": head, "top": top, "box": box}},
                        {"type": "object", "required": ["vector"],
                         "properties": {"vector": vector, "head": head, "top": top}},
                        {"type": "object", "required": ["url"],
                         "properties": {"url": url, "head": head, "top": top, "box": box}},
                    ]}},
                }},
                "responses": {
                    "200": {"description": "Predictions, most probable first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClassifyResponse"}}}},
                    **_query_errors("Not an image, missing field, unknown head, bad top, id, vector or box; a URL "
                                    "refused (url_not_allowed) or not fetched (url_fetch_failed)"),
                },
            }},
            "/api/explain": explain_path(max_upload_bytes),
            "/api/images/{id}": {"get": {
                "summary": "An indexed image as JPEG",
                "parameters": [
                    {"name": "id", "in": "path", "required": True,
                     "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
                    {"name": "size", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 16, "maximum": 1024},
                     "description": "fit the image in size x size pixels"},
                ],
                "responses": {"200": {"description": "JPEG image", "content": {"image/jpeg": {}}},
                              "400": error_response("Not an id (an integer from 0 to 2**63 - 1), or a bad size"),
                              "404": error_response("Unknown id or file gone"),
                              "409": error_response("The file changed since it was indexed (file_changed): re-index it"),
                              "413": error_response("Too large to preview (not a JPEG, over THUMBNAIL_MAX_PIXELS)"),
                              "503": error_response("Too many images being decoded at once: try again (busy); or "
                                            + DAMAGED)},
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
                    "400": error_response("Bad threshold, keep, offset or limit"),
                },
            }},
            "/api/info": {"get": {"summary": "Backbone, size and limits of the index",
                                  "responses": {"200": {"description": "Index description; on_disk: the IVF "
                                                                       "inverted lists are a memory-mapped file, "
                                                                       "searched on CPU",
                                                        "content": {"application/json": {}}}}}},
            "/api/health": {"get": {"summary": "Liveness, and whether the version served is damaged",
                                    "responses": {"200": {"description": HEALTH, "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Health"}}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Example": {
                "type": "object", "minProperties": 1,
                "description": "exactly one of id, vector, image, text; with an optional weight",
                "properties": {"id": {"type": "integer"}, "vector": vector, "text": text,
                               "image": {"type": "string", "contentEncoding": "base64",
                                         "description": "an image file, base64; the upload limits apply"},
                               **{f: {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WEIGHT, "default": 1}
                                  for f in EXAMPLE_FIELDS}}},
            "SearchQuery": {
                "type": "object",
                "description": "one of id, vector, image (base64), text, url or positive (with negative) examples; box "
                               "with an id, an image or a url. Examples: "
                               "'rocchio' searches by the weighted mean of the positives minus "
                               f"{NEGATIVE_WEIGHT} x the weighted mean of the negatives, re-normalised (scores are "
                               "cosines to it); 'best' scores each image by its best positive (weight x cosine) "
                               "and leaves out those more like a negative than like that positive. Examples "
                               "given by id are not among the results.",
                "properties": {"id": {"type": "integer"}, "vector": vector, "text": text,
                               "image": {"type": "string", "contentEncoding": "base64"},
                               "positive": {"type": "array", "minItems": 1, "maxItems": MAX_EXAMPLES,
                                            "items": {"$ref": "#/components/schemas/Example"}},
                               "negative": {"type": "array", "items": {"$ref": "#/components/schemas/Example"}},
                               "strategy": {"type": "string", "enum": list(STRATEGIES), "default": "rocchio"},
                               "url": url, "box": box, "filter": flt, "k": k, "head": head, **window}},
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
                                   "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]},
                                   "file_size": {"type": ["integer", "null"],
                                                 "description": "bytes, as indexed (null: an older index)"},
                                   "thumbnail_url": {"type": "string"}}},
            "SearchResponse": {"type": "object", "required": ["results", "took_ms", "backbone"],
                               "properties": {"results": {"type": "array",
                                                          "items": {"$ref": "#/components/schemas/Hit"}},
                                              "took_ms": {"type": "number"}, "backbone": {"type": "string"},
                                              "head": {"type": ["string", "null"]},
                                              "offset": {"type": "integer"},
                                              "min_score": {"type": ["number", "null"]},
                                              "query": {"type": "object"},
                                              "filter": flt, "matched": {"type": "integer",
                                                                         "description": "images the filter selects"},
                                              "note": {"type": "string"}}},
            "Filter": _filter_schema(),
            "DuplicateEvidence": DUPLICATE_EVIDENCE,
            "DuplicateGroup": {"type": "object",
                               "required": ["group", "ids", "paths", "scores", "keep", "exact", "thumbnail_urls"],
                               "properties": {"group": {"type": "integer"},
                                              "ids": {"type": "array", "items": {"type": "integer"}},
                                              "paths": {"type": "array", "items": {"type": "string"}},
                                              "scores": {"type": "array", "items": {"type": "number"}},
                                              "keep": {"type": "integer"}, "exact": {"type": "boolean"},
                                              "evidence": {"type": "array", "items": {
                                                  "$ref": "#/components/schemas/DuplicateEvidence"}},
                                              "sizes": {"type": "array", "items": {
                                                  "$ref": "#/components/schemas/MemberSize"}},
                                              "thumbnail_urls": {"type": "array", "items": {"type": "string"}}}},
            "DuplicatesResponse": {"type": "object",
                                   "required": ["groups", "total", "offset", "limit", "threshold", "keep"],
                                   "properties": {"groups": {"type": "array",
                                                             "items": {"$ref": "#/components/schemas/DuplicateGroup"}},
                                                  "total": {"type": "integer"}, "offset": {"type": "integer"},
                                                  "limit": {"type": "integer"}, "threshold": {"type": "number"},
                                                  "keep": {"type": "string"}, "generation": {"type": "integer"},
                                                  "images": {"type": "integer"}, "method": {"type": "string"},
                                                  "seconds": {"type": "number",
                                                              "description": "the computation's own time"},
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
    """The ``filter`` object: all conditions hold; a list means any of its values (search/query/filters.py)."""
    texts = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}

    def bounds(kind: dict) -> dict:
        values = {"oneOf": [kind, {"type": "array", "items": kind, "minItems": 1}]}
        return {"oneOf": [kind, {"type": "array", "items": kind, "minItems": 1},
                          {"type": "object", "minProperties": 1, "additionalProperties": False,
                           "properties": {"=": values, **{op: kind for op in COMPARISONS}}}]}

    when = {"type": "string", "pattern": ISO_PATTERN.pattern,
            "description": f"ISO 8601 date or date-time: {TIME_FORMS} (UTC when no zone is given)"}
    return {"type": "object", "additionalProperties": False,
            "description": "Search only images whose stored metadata matches: every field and operator given must "
                           "hold (ones that contradict select nothing); a list means any of its values; null "
                           "(unknown) metadata never matches.  Times are ISO 8601 only, never numbers; taken is "
                           "the camera's EXIF clock.  An answer echoes the filter as applied, in this form.",
            "properties": {**{name: texts for name in TEXT_FIELDS}, "path_prefix": texts,
                           **{name: bounds({"type": "number"}) for name in NUMBER_FIELDS},
                           **{name: bounds(when) for name in TIME_FIELDS}}}


_HEAD_SCHEMA = {
    "type": "object", "required": ["name", "classes", "model", "metrics"],
    "properties": {
        "name": {"type": "string"}, "classes": {"type": "array", "items": {"type": "string"}},
        "model": {"type": "string", "enum": ["softmax", "svm"]},
        "calibration": {"type": "object", "description": "how probabilities were calibrated (the SVM: a temperature)"},
        "search_weight": {"type": "number"}, "created": {"type": "string"}, "labels_source": {"type": "string"},
        "metrics": {"type": "object", "description": "examples_per_class (each image once), "
                                                     "examples_given, repeats_dropped, warnings, folds, "
                                                     "measured_examples, and validation / knn_validation (cross-validated; null when no "
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
    refused = error_response("Training is not allowed for this request (write_scope_required: a read key); the message says why")
    return {
        "/api/heads": {
            "get": {"summary": "The index's heads, and whether this server trains them",
                    "responses": {"200": {"description": "heads and the training permission", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "heads": {"type": "array", "items": head_ref}, "training": training,
                            "models": {"type": "array", "items": {"type": "string"}},
                            "default_model": {"type": "string"}}}}}}}},
            "post": {
                "summary": "Teach a head from a few examples per class (trained in seconds, served at once), or "
                           "make one from class names alone (zero_shot: needs an encoder with a text tower)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [{
                    "type": "object", "required": ["name", "zero_shot"],
                    "description": "a zero-shot head: p(class) = softmax(scale x cosine(image, the class's averaged "
                                   "prompt embeddings)); scale: the preset's logit scale, fitted on labelled "
                                   "images ('labels') or a number",
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                        "zero_shot": {"type": "array", "minItems": 2, "items": {"type": "string", "minLength": 1}},
                        "scale": {"oneOf": [{"type": "string", "enum": ["preset", "labels"]},
                                            {"type": "number", "minimum": 1, "maximum": 1000}], "default": "preset"},
                        "templates": {"type": "array", "maxItems": 20, "items": {"type": "string"},
                                      "description": "prompts with one {} for the class name"},
                        "search_weight": {"type": "number", "minimum": 0, "maximum": 10, "default": 1}}}, {
                    "type": "object", "required": ["name", "examples"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                        "model": {"type": "string", "enum": ["softmax", "svm"]},
                        "search_weight": {"type": "number", "minimum": 0, "maximum": 10, "default": 1},
                        "examples": {"type": "object", "minProperties": 2, "description": "class name -> examples",
                                     "additionalProperties": {"type": "array", "minItems": 1, "items": example}}}}]}}}},
                "responses": {
                    "201": {"description": "The head, with its cross-validated metrics", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "head": head_ref, "training": training}}}}},
                    "400": error_response("Bad name, model or examples (an unknown id, an empty class, one class); "
                                          "bad zero-shot classes, scale or templates, or an encoder without a text "
                                          "tower (text_queries_unsupported)"),
                    "403": refused,
                    "409": error_response("Another command is writing the index; try again"),
                    "413": error_response("Too many examples in one request"),
                }},
        },
        "/api/heads/{name}": {
            "get": {"summary": "One head", "parameters": [{"name": "name", "in": "path", "required": True,
                                                           "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "the head", "content": {"application/json": {}}},
                                  "400": error_response("No such head")}},
            "delete": {"summary": "Delete a head", "parameters": [{"name": "name", "in": "path", "required": True,
                                                                   "schema": {"type": "string"}}],
                       "responses": {"200": {"description": "deleted", "content": {"application/json": {}}},
                                     "403": refused, "404": error_response("No such head")}},
        },
    }
