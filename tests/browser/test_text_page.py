"""The page's text box (issue 33): words searched on an index whose encoder has a text tower (the tiny SigLIP),
"less like this" from a text query, and no text box where the encoder has none."""

import json

from imgsearch.search.engine import SearchEngine
from imgsearch.search.query.examples import Example
from tests.browser.helpers import ARTIFACTS, result_ids, wait_until

TEXT = "a photo of a red car"


def test_the_text_box_searches_by_words_and_less_like_this_keeps_them(page, siglip_server, siglip_index):
    engine = SearchEngine.open(siglip_index)
    sent = []
    page.on("request", lambda req: req.url.endswith("/api/search") and sent.append(req.post_data or ""))
    page.goto(siglip_server.url + "/")
    assert page.is_visible("#text-input")
    page.fill("#text-input", TEXT)
    page.press("#text-input", "Enter")
    wait_until(page, "document.querySelector('#status').textContent.includes('results for “a photo of a red car”')")
    assert json.loads(sent[-1])["text"] == TEXT
    assert result_ids(page) == [h.id for h in engine.search_text(TEXT, k=24)]
    assert page.text_content("#query-caption") == f"“{TEXT}”" and not page.is_visible("#query-image")
    assert page.is_hidden("#why-bar")  # a text has no image to split a score over
    # the bands were measured image to image with efficientnet-lite0: a SigLIP index's scores show alone
    assert page.locator("#results .hit .band").count() == 0 and page.locator("#results .hit .score").count() == 24
    assert "tiny-siglip" in page.text_content("#index-meta") and "/" not in page.text_content("#index-meta")
    assert "score alone" in page.text_content("#score-legend")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait_until(page, "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(ARTIFACTS / "text-desktop.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "text-phone.png"))
    page.set_viewport_size({"width": 1280, "height": 800})

    unwanted = result_ids(page)[0]
    page.click("#results .less >> nth=0")
    wait_until(page, "document.querySelector('#status').textContent.includes('unlike 1')")
    body = json.loads(sent[-1])
    assert body["positive"] == [{"text": TEXT}] and body["negative"] == [{"id": unwanted}]
    expected = engine.search_examples([Example.of_text(TEXT)], [unwanted], k=24)
    assert result_ids(page) == [h.id for h in expected]


def test_no_text_box_where_the_encoder_has_no_text_tower(page, live_server):
    page.goto(live_server.url + "/")
    page.wait_for_selector("#file-input", state="attached")
    assert page.query_selector("#text-input") is None


def test_the_teach_panel_makes_a_zero_shot_head_from_the_class_names(page, siglip_index, tmp_path):
    import shutil

    from imgsearch.web import create_app
    from tests.helpers import LiveServer

    index = shutil.copytree(siglip_index, tmp_path / "idx")  # the head is written into this copy
    server = LiveServer(create_app({"INDEX_DIR": str(index)}))
    try:
        page.goto(server.url + "/")
        page.fill("#text-input", TEXT)
        page.press("#text-input", "Enter")
        wait_until(page, "document.querySelector('#status').textContent.includes('results for')")
        page.click("#teach-toggle")
        assert page.locator(".teach-class-name").count() == 2  # the panel opens with two classes to name
        for n, name in enumerate(("Flags", "Activities")):
            page.fill(f".teach-class-name >> nth={n}", name)
        page.fill("#teach-name", "names")
        page.click("#teach-zero-shot")
        # the server runs imgsearch train-head, which loads TensorFlow and the text tower: tens of seconds here
        wait_until(page, "!document.querySelector('#teach-status').textContent.endsWith('…')", timeout=240)
        assert "Made names from 2 class names" in page.text_content("#teach-status")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "zero-shot-desktop.png"))
        report = page.text_content("#teach-report")
        assert "images labelled with a class name" in report and "kNN vote on the same images" in report
        assert page.eval_on_selector("#head-select", "s => s.value") == "names"
        head = SearchEngine.open(index).head("names")
        assert head.model == "zero-shot" and head.classes == ["Flags", "Activities"]
    finally:
        server.close()
