"""The HTML evaluation report, rendered from a real index with a real trained head."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imgsearch.search.evaluate.plots import load_thumbnail
from imgsearch.search.evaluate.report import write_report


class ImageSources(HTMLParser):
    """Collects the src of every <img> in a page."""

    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def image_sources(page: Path) -> list[str]:
    parser = ImageSources()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser.sources


@pytest.fixture(scope="module")
def trained_copy(built_index, tmp_path_factory) -> Path:
    """A private copy of the shared index, with a real head 'cat' trained on its folder labels."""
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.run.heads import train_head

    index_dir, _ = built_index
    copy = tmp_path_factory.mktemp("report-index") / "idx"
    shutil.copytree(index_dir, copy)
    train_head(copy, "cat", config=HeadTrainingConfig(model="svm"))  # an SVM head (no Keras): the report is tested
    return copy


@pytest.fixture(scope="module")
def report(trained_copy, tmp_path_factory):
    """(results, html path) of a report written from the trained copy."""
    from imgsearch.search.evaluate.metrics import evaluate_index

    results = evaluate_index(trained_copy)
    out = tmp_path_factory.mktemp("report") / "report"
    return results, write_report(results, out, index_dir=trained_copy, map_points=60, thumbnails=40)


def test_every_plot_is_a_real_non_blank_png(report):
    _, page = report
    sources = image_sources(page)
    assert sorted(sources) == ["confusion_cat.png", "embedding_map.png", "precision_at_k.png"]
    for src in sources:
        path = page.parent / src
        assert path.is_file(), src
        with Image.open(path) as img:
            assert img.format == "PNG", src
            assert img.width >= 300 and img.height >= 200, (src, img.size)
            rgb = np.asarray(img.convert("RGB"))  # (h, w, 3)
        assert rgb.std() > 10, f"{src} is nearly blank"
        assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50, f"{src} has almost no colours"


def test_report_json_round_trips(report):
    results, page = report
    saved = json.loads((page.parent / "report.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["retrieval"]["precision_at_1"] == pytest.approx(results["retrieval"]["precision_at_1"])
    assert saved["retrieval"]["map"] == pytest.approx(results["retrieval"]["map"])
    assert saved["heads"]["cat"]["validation"]["accuracy"] == pytest.approx(
        results["heads"]["cat"]["validation"]["accuracy"])


def test_html_shows_figures_head_and_escaped_labels(report):
    results, page = report
    text = page.read_text(encoding="utf-8")
    retrieval, head = results["retrieval"], results["heads"]["cat"]
    for figure in (retrieval["precision_at_1"], retrieval["precision_at_10"], retrieval["map"],
                   results["knn"]["accuracy"]):
        assert f"{figure:.3f}" in text
    section = text[text.index("<h2>Head cat</h2>"):]
    assert f"{head['validation']['accuracy']:.3f}" in section
    assert f"{head['validation']['macro_f1']:.3f}" in section
    assert f"{head['knn_validation']['accuracy']:.3f}" in section
    assert "confusion_cat.png" in section

    # the emoji folder labels contain '&' and must reach the page escaped
    assert "emoji/Food & Drink" in retrieval["per_label"]
    assert "emoji/Food &amp; Drink" in text
    assert "Food & Drink" not in text

    # per-label table: worst average precision first
    worst = min(retrieval["per_label"], key=lambda k: retrieval["per_label"][k]["ap"])
    best = max(retrieval["per_label"], key=lambda k: retrieval["per_label"][k]["ap"])
    table = text[text.index("Per label, worst first"):text.index("<h2>Head cat</h2>")]
    assert table.index(f"<td>{worst.replace('&', '&amp;')}</td>") < table.index(f"<td>{best.replace('&', '&amp;')}</td>")


def test_unlabelled_index_without_heads_renders(tmp_path):
    results = {"index": {"dir": "/data/<unlabelled>", "backbone": "efficientnet-lite0", "images": 12,
                         "labelled_images": 0, "whitening": None},
               "retrieval": None, "knn": None, "heads": {}}
    page = write_report(results, tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    assert image_sources(page) == []
    assert "no retrieval figures" in text
    assert "/data/&lt;unlabelled&gt;" in text
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == results
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".imgsearch-output", "index.html", "report.json"]  # the mark: never indexed


def test_head_without_validation_gets_no_confusion_plot(tmp_path):
    results = {"index": {"dir": "x", "backbone": "b", "images": 3, "labelled_images": 0, "whitening": None},
               "retrieval": None, "knn": None,
               "heads": {"fromcsv": {"classes": ["a", "b"], "labels_source": "csv labels.csv", "trained": {},
                                     "validation": None, "knn_validation": None}}}
    page = write_report(results, tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "<h2>Head fromcsv</h2>" in text
    assert "No validation figures" in text
    assert not list(tmp_path.glob("*.png"))


def test_map_survives_images_that_are_gone(trained_copy, tmp_path):
    """Thumbnails whose files were moved or damaged are skipped, never fatal."""
    copy = tmp_path / "idx"
    shutil.copytree(trained_copy, copy)
    (tmp_path / "broken.png").write_text("not a picture")
    for shard in (copy / "shards").glob("part-*.parquet"):
        table = pq.read_table(shard)
        paths = [str(tmp_path / ("broken.png" if i % 2 else f"gone-{i}.png")) for i in range(table.num_rows)]
        pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", [paths]), shard)
    page = write_report({"index": {}, "retrieval": None, "knn": None, "heads": {}}, tmp_path / "out",
                        index_dir=copy, map_points=40, thumbnails=20)
    assert image_sources(page) == ["embedding_map.png"]
    with Image.open(tmp_path / "out" / "embedding_map.png") as img:
        assert np.asarray(img.convert("RGB")).std() > 10


def test_thumbnail_composites_transparency_on_white(tmp_path):
    Image.new("RGBA", (100, 50), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("RGBA", (100, 50), (255, 0, 0, 255)).save(tmp_path / "red.png")
    clear, red = load_thumbnail(str(tmp_path / "clear.png")), load_thumbnail(str(tmp_path / "red.png"))
    assert clear.shape == (14, 28, 3) and red.shape == (14, 28, 3)
    assert (clear == 255).all()
    assert (red == [255, 0, 0]).all()
    assert load_thumbnail(str(tmp_path / "missing.png")) is None
