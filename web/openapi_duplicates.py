"""The OpenAPI schema of a duplicate group member's evidence (search/duplicates/verifier.py), apart from
web/openapi.py so that module stays one sitting long."""

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
