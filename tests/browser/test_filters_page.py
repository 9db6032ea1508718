"""The page's filter picker in headless Chromium (issue 17): a label, a path prefix, clearing it, and replies
that come back out of order."""

from __future__ import annotations

from tests.browser.helpers import result_ids, wait_until

EMOJI = "emoji/Animals & Nature"


def test_the_page_filter_picker_label_and_path_prefix(page, cnn_server, corpus):
    page.goto(cnn_server.url + "/")
    assert EMOJI in page.eval_on_selector_all("#filter-labels option", "os => os.map(o => o.value)")
    page.set_input_files("#file-input", str(corpus / "photos" / "coffee.jpg"))
    wait_until(page, "document.querySelector('#status').textContent.includes('results for coffee.jpg')")
    unfiltered = result_ids(page)
    assert len(unfiltered) == 24
    page.click("#filters-toggle")  # the filters are a panel opened on demand

    page.select_option("#filter-labels", [EMOJI])  # the last query runs again, filtered
    wait_until(page, "document.querySelector('#status').textContent.includes('among')")
    titles = page.eval_on_selector_all("#results .hit", "els => els.map(e => e.title)")
    assert titles and all(f"/{EMOJI}/" in t for t in titles), titles
    assert "images the filter selects" in page.text_content("#status")

    page.select_option("#filter-labels", [])
    page.fill("#filter-prefix", str(corpus / "photos" / "c"))
    page.dispatch_event("#filter-prefix", "change")
    wait_until(page, "[...document.querySelectorAll('#results .hit')].length > 0 && "
                     "[...document.querySelectorAll('#results .hit')].every(e => e.title.includes('/photos/c'))")
    assert page.get_attribute("#results .hit >> nth=0", "title").endswith("coffee.jpg")

    page.fill("#filter-prefix", "/nowhere/")
    page.dispatch_event("#filter-prefix", "change")
    wait_until(page, "document.querySelector('#status').textContent.includes('no indexed image matches')")
    assert result_ids(page) == []
    page.click("#filter-clear")
    wait_until(page, "document.querySelectorAll('#results .hit').length === 24")


def test_the_page_shows_the_newest_query_whatever_order_the_replies_come_in(page, cnn_server, corpus):
    # clearing the filter while the filtered query was still out: its late reply ("no indexed image matches")
    # replaced the newer unfiltered results (seen in CI under load); a reply to a superseded query is dropped
    held = []

    def hold_filtered(route):
        if b"nowhere" in (route.request.post_data_buffer or b""):
            held.append(route)  # answered below, after the newer query's reply
        else:
            route.continue_()

    page.route("**/api/search", hold_filtered)
    page.goto(cnn_server.url + "/")
    page.set_input_files("#file-input", str(corpus / "photos" / "coffee.jpg"))
    wait_until(page, "document.querySelector('#status').textContent.includes('results for coffee.jpg')")
    page.click("#filters-toggle")
    page.fill("#filter-prefix", "/nowhere/")
    page.dispatch_event("#filter-prefix", "change")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held
    page.click("#filter-clear")
    wait_until(page, "document.querySelectorAll('#results .hit').length === 24 && "
                     "!document.querySelector('#status').textContent.includes('among')")
    for route in held:
        route.continue_()
    page.wait_for_timeout(1500)  # the stale replies arrive
    assert len(result_ids(page)) == 24
    assert "no indexed image matches" not in page.text_content("#status")
    assert page.get_attribute("#results", "aria-busy") is None
