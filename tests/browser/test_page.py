"""The search page in a real browser: Debian's headless Chromium driven by Playwright."""

from tests.browser.helpers import ARTIFACTS, csp_violations, result_ids, wait_for_search_by_id, wait_until, watch


def test_upload_see_results_click_for_more(page, cnn_server, corpus):
    response = page.goto(cnn_server.url + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]  # the page runs under it
    assert "efficientnet-lite0" in page.text_content("#index-meta")
    page.set_input_files("#file-input", str(corpus / "photos" / "coffee.jpg"))
    page.wait_for_selector("#results .hit")
    wait_until(page, "document.querySelector('#status').textContent.includes('results for coffee.jpg')")
    first = result_ids(page)
    assert len(first) == 24
    assert page.get_attribute("#results .hit >> nth=0", "title").endswith("coffee.jpg")
    assert page.is_visible("#query-image")
    # every thumbnail actually loaded
    wait_until(page, "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-upload-results.png"), full_page=True)

    clicked = first[1]
    page.click("#results .hit >> nth=1")
    wait_for_search_by_id(page, clicked)
    second = result_ids(page)
    assert second != first and clicked not in second and len(second) == 24
    # the query is captioned by its file name; its id is in the caption's title
    assert f"(id {clicked})" in page.get_attribute("#query-caption", "title")
    assert page.text_content("#query-caption").split(" · ")[0] == \
        page.get_attribute("#query-caption", "title").split(" (id")[0].split("/")[-1]
    page.screenshot(path=str(ARTIFACTS / "page-more-like-this.png"), full_page=True)


def test_drag_and_drop_and_keyboard(page, cnn_server, corpus):
    page.goto(cnn_server.url + "/")
    data = list((corpus / "photos" / "rocket.jpg").read_bytes())
    handle = page.evaluate_handle(
        """bytes => { const dt = new DataTransfer();
                      dt.items.add(new File([new Uint8Array(bytes)], 'rocket.jpg', {type: 'image/jpeg'}));
                      return dt; }""", data)
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": handle})
    wait_until(page, "document.querySelector('#status').textContent.includes('results for rocket.jpg')")
    assert page.get_attribute("#results .hit >> nth=0", "title").endswith("rocket.jpg")

    # keyboard only: focus the third result and press Enter
    target = result_ids(page)[2]
    page.focus("#results .hit >> nth=2")
    page.keyboard.press("Enter")
    wait_for_search_by_id(page, target)


def test_bad_upload_shows_the_servers_message(page, cnn_server, tmp_path):
    page.goto(cnn_server.url + "/")
    fake = tmp_path / "fake.png"
    fake.write_text("not really a png")
    page.set_input_files("#file-input", str(fake))
    wait_until(page, "document.querySelector('#status').classList.contains('error')")
    assert "not an image" in page.text_content("#status")


def test_phone_width_has_no_horizontal_scroll(browser, cnn_server, corpus):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(cnn_server.url + "/")
    page.set_input_files("#file-input", str(corpus / "photos" / "astronaut.jpg"))
    page.wait_for_selector("#results .hit")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    columns = page.evaluate("getComputedStyle(document.querySelector('#results')).gridTemplateColumns.split(' ').length")
    assert columns == 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=False)
    context.close()


def test_predicted_classes_and_head_aware_search(page, cnn_headed_server, corpus):
    page.goto(cnn_headed_server.url + "/")
    assert page.is_visible("#head-select")
    page.set_input_files("#file-input", str(corpus / "photos" / "coffee.jpg"))
    page.wait_for_selector("#predictions li")
    predictions = page.eval_on_selector_all("#predictions li span", "els => els.map(e => e.textContent)")
    assert len(predictions) == 3 and predictions[0] == "photos"
    assert "head-aware" not in page.text_content("#status")
    plain = result_ids(page)

    page.check("#head-aware")
    page.set_input_files("#file-input", str(corpus / "photos" / "rocket.jpg"))
    wait_until(page, "document.querySelector('#status').textContent.includes('head-aware: cat')")
    assert result_ids(page) != plain
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-heads.png"), full_page=False)


def test_csp_blocks_and_reports_injected_code(browser, cnn_server):
    """The watch the other tests rely on sees a violation when there is one, and CSP stops the code."""
    context = browser.new_context()
    found = watch(context)
    pg = context.new_page()
    pg.goto(cnn_server.url + "/")
    pg.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__injected = true';
        document.body.append(s);
        const img = document.createElement('img');
        img.src = 'https://example.invalid/track.png';
        document.body.append(img);
    }""")
    wait_until(pg, "window.__cspViolations.length >= 2")
    violations = csp_violations(pg, found)
    assert pg.evaluate("window.__injected === undefined")  # the inline script never ran
    assert any("script-src" in v for v in violations) and any("img-src" in v for v in violations)
    context.close()


def test_more_like_these_and_less_like_this(page, cnn_server, corpus):
    """Select several results and search "more like these"; mark one "less like this"; the score legend."""
    sent = []
    page.on("request", lambda req: req.url.endswith("/api/search") and sent.append(req.post_data or ""))
    page.goto(cnn_server.url + "/")
    assert "near-duplicates" in page.text_content("#score-legend")  # the measured bands, before any search
    page.set_input_files("#file-input", str(corpus / "photos" / "coffee.jpg"))
    wait_until(page, "document.querySelector('#status').textContent.includes('results for coffee.jpg')")
    assert page.is_disabled("#more-like-these")
    first = result_ids(page)
    chosen = first[1:3]
    for n in (1, 2):
        page.check(f"#results .select >> nth={n}")
    assert page.text_content("#more-like-these").strip() == "More like these (2)"
    page.click("#more-like-these")
    wait_until(page, "document.querySelector('#status').textContent.includes('like 2 images')")
    assert '"positive":[{"id":%d},{"id":%d}]' % tuple(chosen) in sent[-1]
    liked = result_ids(page)
    assert liked != first and not set(chosen) & set(liked) and len(liked) == 24
    assert page.is_disabled("#more-like-these")  # the selection is spent

    unwanted = liked[0]
    unwanted_name = page.get_attribute("#results .hit >> nth=0", "title").split("/")[-1]
    page.click("#results .less >> nth=0")
    wait_until(page, "document.querySelector('#status').textContent.includes('unlike 1')")
    assert '"negative":[{"id":%d}]' % unwanted in sent[-1]
    assert unwanted not in result_ids(page)
    assert f"unlike {unwanted_name}" in page.text_content("#query-caption")  # by file name, not id

    # an uploaded query marked "less like this": the file goes as a positive, the id as a negative
    page.set_input_files("#file-input", str(corpus / "photos" / "rocket.jpg"))
    wait_until(page, "document.querySelector('#status').textContent.includes('results for rocket.jpg')")
    unwanted = result_ids(page)[1]
    page.click("#results .less >> nth=1")
    wait_until(page, "document.querySelector('#status').textContent.includes('unlike 1')")
    assert unwanted not in result_ids(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-less-like-this.png"), full_page=True)
