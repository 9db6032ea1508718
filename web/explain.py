"""POST /api/explain: why a result matches its query, as the score's split over both images' cells."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request, url_for

from imgsearch.search.errors import ImageError, ImageUnavailableError, InvalidFieldError
from imgsearch.search.query.numbers import id_field
from imgsearch.search.query.regions import parse_box
from imgsearch.web.api import _parse_head, engine
from imgsearch.web.errors import ApiError

explain_api = Blueprint("explain", __name__, url_prefix="/api")
EXPLAIN_WAIT = 30.0  # seconds a request waits for a free slot (an explanation takes a second or two)


def _parse_id(raw, what: str) -> int:
    try:
        return id_field(raw, what)  # a form field is text
    except InvalidFieldError as exc:
        raise ApiError(400, "invalid_id", f"{exc} (an indexed image's id)") from None


@explain_api.post("/explain")
def explain():
    """Multipart ``image`` (the query) + ``id`` (the result), or JSON ``{"query": {"id": Q}, "id": R}``;
    ``head`` for the head-aware score; ``box`` to explain that region of the query (as a search with that box
    scores it; a bad one is 400 invalid_box).  Answers the score and the two grids of shares, rows first.

    Decoding a query or result image whole is the costly part (a 49 MP PNG is ~150 MB of pixels, more while
    converted): at most EXPLAIN_DECODES explanations run at once, the rest wait EXPLAIN_WAIT seconds, then 503."""
    started = time.perf_counter()
    eng = engine()
    if request.mimetype == "multipart/form-data" or request.files:
        upload = request.files.get("image")
        if upload is None:
            raise ApiError(400, "missing_field", "send the query image in the multipart field 'image'")
        fields, query, described = request.form.to_dict(), upload.read(), {"type": "image",
                                                                            "filename": upload.filename or "upload"}
    else:
        try:
            fields = request.get_json(silent=True) if request.is_json else None
        except RecursionError:
            raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None
        if not isinstance(fields, dict):
            raise ApiError(400, "invalid_json", "send JSON such as {\"query\": {\"id\": 3}, \"id\": 7}, or "
                                                "multipart/form-data with the query 'image' and the result's 'id'")
        given = fields.get("query")
        if not isinstance(given, dict) or "id" not in given:
            detail = (" (a vector has no feature map to explain)" if isinstance(given, dict) and "vector" in given
                      else "")
            raise ApiError(400, "invalid_query", "'query' must be {\"id\": N}, an indexed image; to explain an "
                                                 f"uploaded image, send it as multipart 'image'{detail}")
        query = _parse_id(given["id"], "query id")
        described = {"type": "id", "id": query}
    if "id" not in fields:
        raise ApiError(400, "missing_field", "name the result to explain in 'id'")
    result_id = _parse_id(fields["id"], "id")
    head = _parse_head(fields.get("head"), required=False)
    box = fields.get("box")
    if box is not None:
        box = parse_box(box)  # 400 invalid_box before anything is decoded or waited for
        described["box"] = list(box)
    slots = current_app.extensions["imgsearch_explain_slots"]
    if not slots.acquire(timeout=EXPLAIN_WAIT):
        raise ApiError(503, "busy", f"more than {current_app.config['EXPLAIN_DECODES']} explanations are being "
                                    "computed; try again in a moment")
    try:
        why = eng.explain(query, result_id, head=head, max_pixels=current_app.config["MAX_IMAGE_PIXELS"], box=box)
    except ImageUnavailableError:
        raise  # an indexed image's file: its message names it
    except ImageError as exc:
        if described["type"] != "image":
            raise
        raise exc.about(described["filename"]) from None
    finally:
        slots.release()
    size = current_app.config["THUMBNAIL_SIZE"]
    return jsonify(**why.to_dict(), query=described, backbone=eng.backbone,
                   thumbnail_url=url_for("api.image", row_id=result_id, size=size),
                   took_ms=round((time.perf_counter() - started) * 1000, 2))
