"""The OpenAPI schema of a duplicate group member's evidence (search/duplicates/verifier.py), apart from
web/openapi.py so that module stays one sitting long, and the review's paths (web/review_api.py)."""

from __future__ import annotations

from imgsearch.search.duplicates.marks import MAX_MARK_IDS, MAX_REMOVE
from imgsearch.web.openapi_parts import error_response

DUPLICATE_EVIDENCE = {
    "type": "object", "required": ["cosine", "decided_by", "via"],
    "description": "Why a member is in its group (one per member, the keeper first): its cosine "
                   "against the keeper; decided_by: keeper, cosine (at least the threshold), "
                   "keypoints or dense (that check promoted it from below the threshold, or matched it "
                   "against another member, via: the threshold is the first stage's cosine gate) or "
                   "sha256 (an exact copy); via: the member the check was made against; with "
                   "verification on, the check's numbers.",
    "properties": {"cosine": {"type": "number"},
                   "via": {"type": ["integer", "null"],
                           "description": "the id of the member this one was checked against: the keeper, or, "
                                          "when the keeper's own check left it out, the member already in the "
                                          "group whose check matched it; null for the keeper"},
                   "decided_by": {"type": "string",
                                  "enum": ["keeper", "cosine", "keypoints", "dense", "sha256"]},
                   "check": {"type": "string", "enum": ["keypoints", "dense", "none"]},
                   "match": {"type": ["boolean", "null"]}, "inliers": {"type": "integer"},
                   "coverage": {"type": "number"}, "agreement": {"type": "number"},
                   "correlation": {"type": "number"}, "conflict": {"type": "number"},
                   "occluded": {"type": "number",
                                "description": "share of the overlap's blocks a sticker or caption box covered in "
                                               "one picture, left out of the comparison"},
                   "detail": {"type": "integer",
                              "description": "pixels of the 64-pixel thumbnail in the largest part drawn otherwise "
                                             "in the other picture (a clock's other hand, a bar across a 0): 12 "
                                             "or more, two pictures"},
                   "scale": {"type": "number"},
                   "rotation": {"type": "number", "description": "degrees"},
                   "region": {"type": "array", "items": {"type": "number"},
                              "description": "x0, y0, x1, y1 of the keeper (of via when via is another "
                                             "member) the member covers, 0..1"}}}

MEMBER_SIZE = {
    "type": "object", "required": ["width", "height", "file_size"],
    "description": "A member's width x height (pixels, as decoded when indexed) and file size (bytes, as stored; "
                   "null in an index of formats 1-3): the keeper rule largest / smallest is checked against them.",
    "properties": {"width": {"type": "integer"}, "height": {"type": "integer"},
                   "file_size": {"type": ["integer", "null"]}}}

_OPTIONS = {
    "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                  "description": "cosine score against the keeper (default: the calibrated one)"},
    "keep": {"type": "string", "enum": ["largest", "smallest", "oldest", "newest"], "default": "largest"},
    "keypoints": {"type": "boolean", "default": True, "description": "verify pairs below the threshold"}}
_PAGE = [{"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0, "default": 0},
          "description": "the result's page of groups: skip this many"},
         {"name": "limit", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}}]
_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_JOB = {"application/json": {"schema": {"$ref": "#/components/schemas/DuplicatesJob"}}}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_UNKNOWN = {"description": "No such job on this server (unknown_job: never started, or dropped: the last 16 are "
                           "kept)", "content": _ERROR}

DUPLICATES_JOB = {
    "type": "object", "required": ["id", "state", "stage", "done", "total", "threshold", "keep", "keypoints"],
    "description": "A duplicates computation: its progress, and once done a page of its groups (result).",
    "properties": {
        "id": {"type": "string"}, "url": {"type": "string"},
        "state": {"type": "string", "enum": ["running", "done", "cancelled", "failed"]},
        "stage": {"type": ["string", "null"], "enum": ["queued", "pairs", "verifying", "grouping", None],
                  "description": "queued (waiting for another computation of this version), pairs (images "
                                 "searched), verifying (candidate pairs checked), grouping (components); null: the "
                                 "report was already computed"},
        "done": {"type": "integer"}, "total": {"type": "integer", "description": "units of this stage"},
        **_OPTIONS, "generation": {"type": "integer"},
        "result": {"$ref": "#/components/schemas/DuplicatesResponse"},
        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}

DUPLICATES_JOB_PATHS = {
    "/api/duplicates/jobs": {"post": {
        "summary": "Start finding duplicates as a job with progress (or reuse the job of the same options)",
        "description": "One computation per index version, threshold, keep and keypoints: a running or finished "
                       "job of the same ones is answered instead of a new one. Poll GET /api/duplicates/jobs/{id}.",
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": _OPTIONS}}}},
        "parameters": _PAGE,
        "responses": {
            "202": {"description": "Running (Location: the job's URL)", "content": _JOB},
            "200": {"description": "Already computed: the job is done, with its result", "content": _JOB},
            "400": {"description": "Bad threshold, keep, keypoints, offset or limit, or a body that is not a JSON "
                                   "object", "content": _ERROR},
            "503": {"description": "16 jobs are running (busy; Retry-After)", "content": _ERROR}}}},
    "/api/duplicates/jobs/{id}": {
        "get": {"summary": "A duplicates job's state, stage and counts; once done, a page of its groups",
                "parameters": [_JOB_ID, *_PAGE],
                "responses": {"200": {"description": "The job", "content": _JOB},
                              "400": {"description": "Bad offset or limit", "content": _ERROR}, "404": _UNKNOWN}},
        "delete": {"summary": "Cancel a duplicates job (nothing of it is cached); a finished one is left as it is",
                   "parameters": [_JOB_ID, *_PAGE],
                   "responses": {"200": {"description": "The job, cancelled (or as it finished)", "content": _JOB},
                                 "404": _UNKNOWN}}},
}


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
