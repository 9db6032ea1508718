"""The page: query by example, and the Duplicates view (``#duplicates``)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from imgsearch.search.duplicates.groups import DEFAULT_THRESHOLD, KEEP_RULES
from imgsearch.search.engine import display_text
from imgsearch.search.hits import score_bands_apply
from imgsearch.search.query.text import has_text_tower
from imgsearch.search.errors import ImgsearchError
from imgsearch.search.query.numbers import id_field

MAX_PICKER_LABELS = 500  # labels the filter picker lists


def backbone_label(name: str) -> str:
    """The encoder as the page names it: a preset folder or a model file by its last name, not its whole path
    (a name or a download handle as it is)."""
    if "://" in name:
        return name
    kind, _, rest = name.rpartition(":") if name.startswith("onnx:") else ("", "", name)
    short = rest.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or rest
    return f"{kind}:{short}" if kind else short

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                  static_url_path="/static")


@pages.get("/")
def index():
    engine = current_app.extensions["imgsearch"].current()  # one index version for the whole page
    return render_template("index.html", backbone=backbone_label(engine.backbone), count=len(engine),
                           bands=score_bands_apply(engine.backbone), heads=engine.head_names(),
                           max_upload_mb=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024),
                           default_threshold=f"{DEFAULT_THRESHOLD:.2f}", keep_rules=KEEP_RULES,
                           url_queries=current_app.config["ALLOW_URL_QUERIES"],
                           text_queries=has_text_tower(engine.manifest),  # an image-text encoder
                           thumbnail_size=current_app.config["THUMBNAIL_SIZE"],
                           opening=_opening(engine, request.args.get("id")),
                           labels=[display_text(x) for x in engine.labels()[:MAX_PICKER_LABELS]])


def _opening(engine, text: str | None) -> dict | None:
    """The search that ``/?id=N`` opens the page on: the image's {id, path, label}; {error} saying what to
    change where N is not an indexed image's id; None without ``?id``."""
    if text is None:
        return None
    try:
        hit = engine.get(id_field(text, "id"))
    except ImgsearchError as exc:
        return {"error": f"The address asks for ?id={display_text(text)[:40]}, which cannot open a search: {exc}"}
    return {"id": hit.id, "path": display_text(hit.path), "label": display_text(hit.label)}
