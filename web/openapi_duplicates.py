"""The OpenAPI schema of a duplicate group member's evidence (search/duplicates/verifier.py), apart from
web/openapi.py so that module stays one sitting long, and the review's paths (web/review_api.py)."""

from __future__ import annotations

from imgsearch.search.duplicates.marks import MAX_MARK_IDS, MAX_REMOVE
from imgsearch.web.openapi_parts import error_response

DUPLICATE_EVIDENCE = {
    "type": "object", "required": ["cosine", "decided_by"],
    "description": "Why a member is in its group (one per member, the keeper first): its cosine "
                   "against the keeper; decided_by: keeper, cosine (at least the threshold), "
                   "keypoints or dense (that check promoted it from below the threshold: the "
                   "threshold is the first stage's cosine gate) or sha256 (an exact copy); with "
                   "verification on, the check's numbers.",
    "properties": {"cosine": {"type": "number"},
                   "decided_by": {"type": "string",
                                  "enum": ["keeper", "cosine", "keypoints", "dense", "sha256"]},
                   "check": {"type": "string", "enum": ["keypoints", "dense", "none"]},
                   "match": {"type": ["boolean", "null"]}, "inliers": {"type": "integer"},
                   "coverage": {"type": "number"}, "agreement": {"type": "number"},
                   "correlation": {"type": "number"}, "conflict": {"type": "number"},
                   "scale": {"type": "number"},
                   "rotation": {"type": "number", "description": "degrees"},
                   "region": {"type": "array", "items": {"type": "number"},
                              "description": "x0, y0, x1, y1 of the keeper the member covers, 0..1"}}}


def review_paths() -> dict:
    """GET/POST/DELETE /api/duplicates/marks and POST /api/duplicates/remove (web/review_api.py)."""
    ids = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": MAX_MARK_IDS,
           "description": "indexed ids; every pair among them (two: a pair; a group's: the whole group)"}
    body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["ids"], "properties": {"ids": ids}}}}}
    counts = {"description": "pairs among the ids, of them changed (newly marked or unmarked), marks in all",
              "content": {"application/json": {"schema": {"type": "object", "properties": {
                  "ids": ids, "pairs": {"type": "integer"}, "changed": {"type": "integer"},
                  "total": {"type": "integer"}}}}}}
    refused = error_response("A write with a read key (write_scope_required); the message says why")
    busy = error_response("Another command is writing the index (index_busy); try again")
    bad = error_response("Not a list of ids, fewer than two different ids (byte-identical copies are one "
                         "indexed id), too many, or an id not indexed (unknown_id)")
    mark = {"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": ["integer", "null"]},
                "description": "the ids holding the two images now (null: not indexed any more)"},
        "marked_ids": {"type": "array", "items": {"type": "integer"}},
        "paths": {"type": "array", "items": {"type": "string"}, "description": "as when marked"},
        "sha256": {"type": "array", "items": {"type": "string"}}, "marked": {"type": "string"}}}
    return {
        "/api/duplicates/marks": {
            "get": {"summary": "Pairs marked \"not a duplicate\" (never in one group), and whether this request "
                               "may write",
                    "responses": {"200": {"description": "the marks", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "marks": {"type": "array", "items": mark}, "total": {"type": "integer"},
                            "writing": {"type": "object", "properties": {"allowed": {"type": "boolean"},
                                                                         "why": {"type": "string"}}}}}}}}}},
            "post": {"summary": "Mark every pair among ids \"not a duplicate\" (kept by the images' sha256: the "
                                "marks hold in every later version)",
                     "requestBody": body,
                     "responses": {"200": counts, "400": bad, "403": refused, "409": busy}},
            "delete": {"summary": "Unmark every pair among ids",
                       "requestBody": body,
                       "responses": {"200": counts, "400": bad, "403": refused, "409": busy}},
        },
        "/api/duplicates/remove": {"post": {
            "summary": "Remove a group's other members from the index (never the files on disk); the server "
                       "serves the new version at once",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["keep", "remove"], "properties": {
                    "keep": {"type": "integer", "minimum": 0, "description": "the group's kept id: not removed"},
                    "remove": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1,
                               "maxItems": MAX_REMOVE}}}}}},
            "responses": {
                "200": {"description": "removed, and the version now served", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "removed": {"type": "array", "items": {"type": "integer"}}, "keep": {"type": "integer"},
                        "count": {"type": "integer"}, "generation": {"type": "integer"}}}}}},
                "400": error_response("Not ids, keep among remove (keeper_removed), too many, or an id not "
                                      "indexed (unknown_id)"),
                "403": refused, "409": busy}}},
    }
