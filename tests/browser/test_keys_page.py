"""The page on a server started with --require-key: it asks for a key (a labelled field), keeps it for the tab
only (sessionStorage), retries, and shows results with their thumbnails loaded through the key."""

from __future__ import annotations

import pytest

from tests.browser.helpers import result_ids, wait_until
from tests.helpers import LiveServer


@pytest.fixture(scope="module")
def keyed_server(built_index, tmp_path_factory):
    from imgsearch.web import create_app
    from imgsearch.web.keys import KeyStore

    store = KeyStore(tmp_path_factory.mktemp("page-keys") / "keys.json")
    token, _ = store.create("read", "page")
    server = LiveServer(create_app({"INDEX_DIR": str(built_index[0]), "WARM_UP": False, "REQUIRE_KEY": True,
                                    "KEYS_FILE": str(store.path)}))
    yield server, token
    server.close()


def test_the_page_asks_for_a_key_and_keeps_it_for_the_tab(page, keyed_server, corpus):
    server, token = keyed_server
    page.goto(server.url + "/")
    assert page.is_hidden("#key-form")
    page.set_input_files("#file-input", str(corpus / "photos" / "coffee.jpg"))
    page.wait_for_selector("#key-form", state="visible")
    assert "requires an API key" in page.text_content("#key-message")
    page.get_by_label("API key").fill("isk_wrong")
    page.click("#key-form button")
    wait_until(page, "document.querySelector('#key-message').textContent.includes('not accepted')")
    assert page.is_visible("#key-form")
    page.get_by_label("API key").fill(token)
    page.click("#key-form button")
    wait_until(page, "document.querySelector('#status').textContent.includes('results for coffee.jpg')")
    assert page.is_hidden("#key-form") and len(result_ids(page)) > 0
    wait_until(page, "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.evaluate("sessionStorage.getItem('imgsearch-api-key')") == token
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    # a new tab (a new session) asks again
    other = page.context.new_page()
    other.goto(server.url + "/")
    assert other.evaluate("sessionStorage.getItem('imgsearch-api-key')") is None
    other.close()
