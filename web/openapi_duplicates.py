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
