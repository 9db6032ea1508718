"""The page in headless Chromium: every test here is a ``browser`` test (deselect with -m "not browser").

The page runs end to end on the efficientnet-lite0 indexes and servers (``cnn_server`` and the like): what
it shows is what a user sees, and these tests are outside the inner loop anyway."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.helpers import CHROMIUM, FLAGS, csp_violations, watch
from tests.helpers import mark_area


def pytest_collection_modifyitems(items):
    mark_area(items, Path(__file__).parent, pytest.mark.browser)


@pytest.fixture(scope="session")
def cnn_dup_index(tmp_path_factory, dup_corpus, lite0):
    """(folder, summary): ``dup_corpus`` indexed with efficientnet-lite0, whose near-duplicate scores the page's
    threshold slider is set for (edits 0.85 to 0.94, other photos under 0.5)."""
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images

    index_dir = tmp_path_factory.mktemp("cnn-dup-index") / "idx"
    return index_dir, index_images([dup_corpus], index_dir, IndexConfig(progress=False))


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (make test does) "
                    "or set IMGSEARCH_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page whose JavaScript errors and Content-Security-Policy violations fail the test that used it."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    found = watch(context)
    pg = context.new_page()
    yield pg
    violations = csp_violations(pg, found) if not pg.is_closed() else found["csp"]
    context.close()
    assert found["errors"] == [], f"JavaScript errors on the page: {found['errors']}"
    assert violations == [], f"Content-Security-Policy violations on the page: {violations}"
