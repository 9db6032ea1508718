"""The page's Duplicates view in headless Chromium: groups at a threshold set by keyboard, keypoints on and
off, paging, one keeper per group, and a click that searches by the picked image."""

from __future__ import annotations

import shutil

from tests.browser.helpers import wait_for_search_by_id, wait_until
from tests.helpers import LiveServer


def _groups_shown(pg):
    return pg.eval_on_selector_all("#dup-groups .dup-group", "els => els.map(e => Number(e.dataset.group))")


def test_the_duplicates_view(page, cnn_dup_index, tmp_path):
    from imgsearch.web import create_app

    index_dir = tmp_path / "idx"
    shutil.copytree(cnn_dup_index[0], index_dir)
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False}))
    try:
        page.goto(server.url + "/")
        page.click("#nav-duplicates")
        wait_until(page, "document.querySelector('#dup-status').textContent.includes('groups at threshold')")
        assert page.is_hidden("#search-view") and page.is_visible("#duplicates-view")
        assert "threshold 0.90" in page.text_content("#dup-status")
        at_default = len(_groups_shown(page))

        page.focus("#dup-threshold")  # the slider, by keyboard: 0.90 -> 0.80
        for _ in range(10):
            page.keyboard.press("ArrowLeft")
        wait_until(page, "document.querySelector('#dup-status').textContent.startsWith('6 groups at "
                              "threshold 0.80')")
        # keypoints already confirm the cropped edit at 0.90, so lowering the threshold adds no group here
        assert page.text_content("#dup-threshold-value") == "0.80" and at_default <= 6
        assert "keypoints checked" in page.text_content("#dup-status")
        page.uncheck("#dup-keypoints")  # scores only: the request says so, and so does the answer
        wait_until(page, "document.querySelector('#dup-status').textContent.includes('scores only')")
        page.check("#dup-keypoints")
        wait_until(page, "document.querySelector('#dup-status').textContent.includes('keypoints checked')")
        page.select_option("#dup-limit", "2")
        wait_until(page, "document.querySelectorAll('#dup-groups .dup-group').length === 2")
        assert _groups_shown(page) == [1, 2] and page.is_disabled("#dup-prev")
        page.click("#dup-next")
        wait_until(page, "document.querySelector('#dup-page').textContent === '3–4 of 6'")
        page.click("#dup-next")
        wait_until(page, "document.querySelector('#dup-page').textContent === '5–6 of 6'")
        assert _groups_shown(page) == [5, 6] and page.is_disabled("#dup-next")
        page.click("#dup-prev")
        wait_until(page, "document.querySelector('#dup-page').textContent === '3–4 of 6'")
        keepers = page.eval_on_selector_all("#dup-groups .dup-group", "els => els.map(e => e.querySelectorAll("
                                                                      "'.dup-hit.keeper').length)")
        assert keepers == [1, 1]  # one marked keeper per group
        wait_until(page, "[...document.querySelectorAll('#dup-groups img')].every(i => i.complete && "
                              "i.naturalWidth > 0)")

        target = page.get_attribute("#dup-groups .dup-member:not(.keeper) >> nth=0", "data-id")
        page.click("#dup-groups .dup-member:not(.keeper) .dup-hit >> nth=0")
        wait_for_search_by_id(page, target)
        assert page.is_visible("#search-view") and page.is_hidden("#duplicates-view")
        assert f"(id {target})" in page.get_attribute("#query-caption", "title")
        assert page.evaluate("location.hash") == "#search"
    finally:
        server.close()
