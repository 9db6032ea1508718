"""The page's "why?" toggle (issue 18) in headless Chromium: the heat on the query and on the result."""

from __future__ import annotations

from tests.browser.helpers import ARTIFACTS, result_ids, wait_for_search_by_id, wait_until

DRAWN = "(sel) => { const c = document.querySelector(sel); return !!c && !c.hidden && c.dataset.drawn === 'true' }"


def _drawn(pg, selector: str) -> bool:
    return pg.evaluate(f"({DRAWN})({selector!r})")


def _tinted(pg, selector: str) -> float:
    """The fraction of a canvas's pixels that are painted (alpha > 0)."""
    return pg.evaluate("""(sel) => { const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n / (c.width * c.height); }""",
                       selector)


def test_why_toggle_overlays_the_query_and_the_hovered_or_focused_result(page, cnn_server, corpus):
    page.goto(cnn_server.url + "/")
    assert page.is_hidden("#why-bar")
    page.set_input_files("#file-input", str(corpus / "photos" / "chelsea.jpg"))
    wait_until(page, "document.querySelector('#status').textContent.includes('results for chelsea.jpg')")
    wait_until(page, "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.is_visible("#why-toggle") and page.is_hidden("#why-legend")

    # keyboard: the toggle is a button; focusing a result shows its pair
    page.focus("#why-toggle")
    page.keyboard.press("Enter")
    assert page.get_attribute("#why-toggle", "aria-pressed") == "true" and page.is_visible("#why-legend")
    page.focus("#results .hit >> nth=1")
    wait_until(page, f"({DRAWN})('#query canvas.heat') && ({DRAWN})('#results li:nth-child(2) canvas.heat')")
    assert _tinted(page, "#query canvas.heat") > 0.5 and _tinted(page, "#results li:nth-child(2) canvas.heat") > 0.5
    assert "score" in page.text_content("#why-status")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-why.png"), full_page=True)

    # hover another result: its pair replaces the first
    page.hover("#results .hit >> nth=3")
    wait_until(page, f"({DRAWN})('#results li:nth-child(4) canvas.heat')")
    assert not _drawn(page, "#results li:nth-child(2) canvas.heat")
    assert page.eval_on_selector_all("#results .hit.explained", "els => els.length") == 1

    # off: the overlays go
    page.focus("#why-toggle")
    page.keyboard.press(" ")
    assert page.get_attribute("#why-toggle", "aria-pressed") == "false"
    assert not _drawn(page, "#query canvas.heat") and not _drawn(page, "#results li:nth-child(4) canvas.heat")

    # a query by id (click a result), explained too
    target = result_ids(page)[0]
    page.click("#results .hit >> nth=0")
    wait_for_search_by_id(page, target)
    page.click("#why-toggle")
    page.hover("#results .hit >> nth=2")
    wait_until(page, f"({DRAWN})('#query canvas.heat') && ({DRAWN})('#results li:nth-child(3) canvas.heat')")
