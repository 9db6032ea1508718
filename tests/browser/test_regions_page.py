"""The page's region search (a box dragged with the mouse, or drawn with the keyboard) and its URL field,
in headless Chromium: what each search sends, what it finds, and no console errors or CSP violations
(the ``page`` fixture, tests/browser/conftest.py, checks those)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.browser.helpers import ARTIFACTS, wait_for_search_by_id, wait_until
from tests.helpers import LiveServer
from tests.image_server import ImageServer


@pytest.fixture(scope="module")
def composite(tmp_path_factory, photos_dir):
    """The astronaut on the left half and the retina on the right, 1024 x 512, and the photos, to serve."""
    folder = tmp_path_factory.mktemp("page-regions")
    canvas = Image.new("RGB", (1024, 512))
    for x, name in ((0, "astronaut"), (512, "retina")):
        with Image.open(photos_dir / f"{name}.jpg") as im:
            canvas.paste(im.convert("RGB").resize((512, 512)), (x, 0))
    canvas.save(folder / "composite.png")
    (folder / "rocket.jpg").write_bytes((photos_dir / "rocket.jpg").read_bytes())
    return folder


# Records the fields of every search the page sends (a form's text fields, or the JSON body): the DevTools
# protocol does not show multipart bodies with a file in them.
SEARCH_RECORDER = """
window.__searches = [];
const pageFetch = window.fetch;
window.fetch = (url, init) => {
  if (String(url).endsWith('/api/search') && init) {
    const b = init.body;
    window.__searches.push(b instanceof FormData
      ? Object.fromEntries([...b.entries()].filter(([, v]) => typeof v === 'string')) : JSON.parse(b));
  }
  return pageFetch(url, init);
};
"""


def _sent(pg) -> dict:
    """The fields of the last search the page sent."""
    return pg.evaluate("window.__searches[window.__searches.length - 1]")


def _status_has(pg, text: str) -> None:
    wait_until(pg, f"document.querySelector('#status').textContent.includes({json.dumps(text)})")


def _first_title(pg) -> str:
    return pg.get_attribute("#results .hit >> nth=0", "title")


def _drag(pg, x0, y0, x1, y1) -> None:
    """Drag with the mouse from (x0, y0) to (x1, y1), fractions of the query image."""
    box = pg.locator("#query-image").bounding_box()
    pg.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
    pg.mouse.down()
    pg.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=8)
    pg.mouse.up()


def test_drag_a_box_or_draw_one_with_the_keyboard_to_search_by_a_region(page, cnn_server, composite):
    page.add_init_script(SEARCH_RECORDER)
    page.goto(cnn_server.url + "/")
    page.set_input_files("#file-input", str(composite / "composite.png"))
    _status_has(page, "results for composite.png in")
    assert "box" not in _sent(page)

    # the mouse: a box over the right half finds the retina
    _drag(page, 0.55, 0.05, 0.98, 0.95)
    _status_has(page, "results for composite.png (region 5")
    x0, y0, x1, y1 = map(float, _sent(page)["box"].split(","))
    assert x0 == pytest.approx(0.55, abs=0.01) and x1 == pytest.approx(0.98, abs=0.01)
    assert _first_title(page).endswith("retina.jpg")
    assert page.is_visible("#region-box") and "Region: 5" in page.text_content("#region-status")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-region-drag.png"), full_page=False)

    # the keyboard: Escape clears it (whole image again); an arrow shows a box, arrows move it, Enter searches
    page.focus("#query-frame")
    page.keyboard.press("Escape")
    _status_has(page, "results for composite.png in")
    assert page.is_hidden("#region-box")
    page.keyboard.press("ArrowLeft")  # the first press shows the middle quarter, not yet searched
    assert "press Enter" in page.text_content("#region-status")
    for _ in range(5):
        page.keyboard.press("ArrowLeft")  # to the left edge, and no further
    page.keyboard.press("Shift+ArrowUp")  # resize: the bottom edge up by one step
    page.keyboard.press("Enter")
    _status_has(page, "results for composite.png (region 0–50 % across, 25–70 % down)")
    assert _sent(page)["box"] == "0,0.25,0.5,0.7" and _first_title(page).endswith("astronaut.jpg")


def test_a_box_on_an_indexed_image_is_sent_with_its_id(page, cnn_server, composite):
    page.add_init_script(SEARCH_RECORDER)
    page.goto(cnn_server.url + "/")
    page.set_input_files("#file-input", str(composite / "rocket.jpg"))
    _status_has(page, "results for rocket.jpg in")
    target = int(page.get_attribute("#results .hit >> nth=0", "data-id"))
    name = _first_title(page).rsplit("/", 1)[-1]
    page.click("#results .hit >> nth=0")
    wait_for_search_by_id(page, target)
    wait_until(page, "document.querySelector('#query-image').complete")
    _drag(page, 0.1, 0.1, 0.6, 0.9)
    _status_has(page, f"results for {name} (region 10–60 % across, 10–90 % down)")
    body = _sent(page)
    assert body["id"] == target and body["box"] == pytest.approx([0.1, 0.1, 0.6, 0.9], abs=0.02)


@pytest.fixture(scope="module")
def url_page_server(cnn_server, composite):
    from imgsearch.web import create_app

    images = ImageServer(composite)
    app = create_app({"ALLOW_URL_QUERIES": True, "URL_QUERY_ALLOW_NETWORKS": "127.0.0.1/32"},
                     engine=cnn_server.app.extensions["imgsearch"])
    server = LiveServer(app)
    yield server, images
    server.close()
    images.close()


def test_search_by_an_images_address_where_the_server_allows_it(page, cnn_server, url_page_server):
    page.goto(cnn_server.url + "/")
    assert page.locator("#url-form").count() == 0  # off by default: no field
    server, images = url_page_server
    page.goto(server.url + "/")
    page.fill("#url-input", f"{images.url}/rocket.jpg")
    page.click("#url-form button")
    _status_has(page, f"results for {images.url}/rocket.jpg in")
    assert _first_title(page).endswith("rocket.jpg") and page.is_hidden("#query-frame")
    page.fill("#url-input", "http://10.0.0.1/x.jpg")
    page.click("#url-form button")
    wait_until(page, "document.querySelector('#status').classList.contains('error')")
    assert "10.0.0.1 is a private address" in page.text_content("#status")
