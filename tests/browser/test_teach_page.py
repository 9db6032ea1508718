"""Teach mode in a real browser: two classes, five results clicked into each, train, the new head's predictions.

Headless Chromium (Playwright) over the production server on loopback, on a copy of the
session's built index; no JavaScript errors, no Content-Security-Policy violations
(the ``page`` fixture, tests/browser/conftest.py, checks both).
"""

from __future__ import annotations

import shutil

import pytest

from tests.browser.helpers import wait_until
from tests.helpers import LiveServer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def teach_page_server(tmp_path_factory, cnn_index):
    from imgsearch.web import create_app

    index_dir = tmp_path_factory.mktemp("teach-page") / "idx"
    shutil.copytree(cnn_index[0], index_dir)
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir)}))
    yield server
    server.close()


def _add_five(pg, label: str, keyboard: bool) -> None:
    """Add five results labelled ``label`` to the chosen class: clicks, or Enter on the focused result."""
    hits = pg.locator(f'#results .hit[data-label="{label}"]')
    assert hits.count() >= 5, f"only {hits.count()} results labelled {label}"
    for i in range(5):
        if keyboard:
            hits.nth(i).focus()
            pg.keyboard.press("Enter")
        else:
            hits.nth(i).click()


def test_teach_two_classes_from_clicked_results_and_see_predictions(teach_page_server, page, corpus):
    page.goto(teach_page_server.url + "/")
    assert page.locator("#heads-bar").is_hidden()  # no head yet
    page.set_input_files("#file-input", str(sorted((corpus / "emoji" / "Flags").glob("*.png"))[0]))
    wait_until(page, "document.querySelectorAll('#results .hit').length > 0")
    page.click("#teach-toggle")
    assert page.get_attribute("#teach-toggle", "aria-expanded") == "true"
    wait_until(page, "!document.getElementById('teach-train').disabled && document.getElementById('teach-model').value")
    names = page.locator(".teach-class-name")
    names.nth(0).fill("flag")
    names.nth(1).fill("smiley")
    page.locator(".teach-class input[type=radio]").nth(0).check()
    _add_five(page, "emoji/Flags", keyboard=False)
    # the clicks added examples; they did not search
    assert page.locator(".teach-class").nth(0).locator(".teach-count").inner_text() == "5 examples"
    page.set_input_files("#file-input", str(sorted((corpus / "emoji" / "Smileys & Emotion").glob("*.png"))[0]))
    wait_until(page, "[...document.querySelectorAll('#results .hit')].some(e => e.dataset.label === 'emoji/Smileys & Emotion')")
    page.locator(".teach-class input[type=radio]").nth(1).check()
    _add_five(page, "emoji/Smileys & Emotion", keyboard=True)
    assert page.locator(".teach-class").nth(1).locator(".teach-count").inner_text() == "5 examples"
    page.fill("#teach-name", "page-head")
    page.click("#teach-train")
    wait_until(page, "!document.getElementById('teach-report').hidden", timeout=120)
    report = page.inner_text("#teach-report")
    assert "page-head (softmax)" in report and "flag: 5 examples" in report and "smiley: 5 examples" in report
    assert "held-out examples" in report
    # the new head is chosen, and the query (a smiley) is classified with it
    assert page.eval_on_selector("#head-select", "s => s.value") == "page-head"
    wait_until(page, "!document.getElementById('predictions').hidden")
    assert page.locator("#predictions li span").first.inner_text() == "smiley"
    page.check("#head-aware")
    page.click("#teach-toggle")  # out of teach mode: a click searches again, now head-aware
    page.locator("#results .hit").first.click()
    wait_until(page, "document.getElementById('status').textContent.includes('head-aware: page-head')")
