"""Reviewing duplicate groups on the page (web/static/review.js) in headless Chromium, over a copy of the fake
model's duplicates index: a "Not a duplicate" mark survives a reload of the page and a new index version;
"Remove others…" opens a dialog listing exactly the files to be removed, Escape cancels it, and after
confirming they are gone from the index (the files stay); the groups download as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from tests.browser.helpers import wait_until
from tests.helpers import LiveServer
from tests.pixel_model import NAME


def _shown(page) -> list[list[int]]:
    """The ids of each group shown, keeper first."""
    return page.eval_on_selector_all("#dup-groups .dup-group", "els => els.map(g => [...g.querySelectorAll("
                                                               "'li[data-id]')].map(m => Number(m.dataset.id)))")


def _open_duplicates(page, url: str) -> None:
    page.goto(url + "/#duplicates")
    wait_until(page, "document.querySelector('#dup-status').textContent.includes('groups at threshold')")
    wait_until(page, "document.querySelectorAll('#dup-groups .review-actions').length > 0")


def test_marks_survive_a_reload_and_a_new_version_and_removal_is_confirmed(page, dup_index, tmp_path, photos_dir):
    from imgsearch.web import create_app

    index_dir = tmp_path / "idx"
    shutil.copytree(dup_index[0], index_dir)
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False, "RELOAD_INTERVAL": 0}))
    try:
        _open_duplicates(page, server.url)
        before = _shown(page)
        near = [g for g in before if len(set(g)) > 1]
        assert len(before) == 6 and len(near) == 4
        # exact copies (one indexed image): nothing to mark or remove
        actions = page.eval_on_selector_all("#dup-groups .dup-group", "els => els.map(g => "
                                                                      "g.querySelectorAll('.review-actions').length)")
        assert actions == [int(len(set(g)) > 1) for g in before]

        # "Not a duplicate" on the first group's other member, by keyboard
        keeper, member = near[0]
        button = page.locator(f"#dup-groups li[data-id='{member}'] button", has_text="Not a duplicate")
        button.focus()
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelector('#review-status').textContent.startsWith('Marked image')")
        wait_until(page, "document.querySelectorAll('#dup-groups .dup-group').length === 5")
        assert [keeper, member] not in _shown(page)

        page.reload()  # the mark is the index folder's, not the page's
        _open_duplicates(page, server.url)
        assert [keeper, member] not in _shown(page) and len(_shown(page)) == 5

        # a new version: a photo's copy and its edit indexed; the mark holds, the new ones are grouped
        extra = tmp_path / "extra"
        extra.mkdir()
        shutil.copy(photos_dir / "colorwheel.jpg", extra / "colorwheel.jpg")
        with Image.open(photos_dir / "colorwheel.jpg") as im:
            im.resize((im.width // 2, im.height // 2)).save(extra / "colorwheel-edit.jpg", quality=80)
        index_images([extra], index_dir, IndexConfig(backbone=NAME, progress=False))
        server.wait_serving(13)  # the server opens the new version in the background
        page.reload()
        _open_duplicates(page, server.url)
        # colorwheel.jpg's bytes are indexed already (photos/): an exact copy; its edit a near-duplicate
        assert "among 13 images" in page.text_content("#dup-status")
        assert [keeper, member] not in _shown(page) and len(_shown(page)) == 7

        # the mark listed, and undone from the list: the pair is grouped again
        wait_until(page, "document.querySelector('#review-marks-count').textContent === '1'")
        page.click("#review-marks summary")
        page.click("#review-marks-list button")
        wait_until(page, "document.querySelector('#review-status').textContent.startsWith('Unmarked')")
        wait_until(page, "document.querySelector('#review-marks-count').textContent === '0'")
        assert [keeper, member] in _shown(page) and len(_shown(page)) == 8
        assert page.is_hidden("#review-permission")  # loopback: anyone may write

        # "Remove others…": a dialog listing exactly the members to be removed; Escape cancels
        number, group = next((n, g) for n, g in enumerate(_shown(page)) if len(set(g)) > 1)
        paths = [page.get_attribute(f"#dup-groups li[data-id='{i}'] .hit", "title") for i in group[1:]]
        remove = page.locator(f"#dup-groups .dup-group >> nth={number}").locator("button", has_text="Remove others")
        remove.focus()
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelector('#review-dialog').open")
        listed = page.eval_on_selector_all("#review-dialog-list > li", "els => els.map(e => e.textContent)")
        assert listed == [f"{p} (id {i})" for p, i in zip(paths, group[1:])]
        page.keyboard.press("Escape")
        assert page.is_hidden("#review-dialog")
        assert set(group) <= set(SearchEngine.open(index_dir).ids.tolist())  # nothing removed
        remove.click()
        wait_until(page, "document.querySelector('#review-dialog').open")
        page.click("#review-confirm")
        wait_until(page, "document.querySelector('#review-status').textContent.startsWith('Removed')")
        wait_until(page, f"!document.querySelector(\"#dup-groups li[data-id='{group[1]}']\")")
        left = set(SearchEngine.open(index_dir).ids.tolist())
        assert group[0] in left and not set(group[1:]) & left
        assert all(Path(p).is_file() for p in paths)  # never the files on disk

        # the groups at the view's settings, downloaded
        with page.expect_download() as info:
            page.click("#dup-download-csv")
        rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
        shown = _shown(page)
        assert sorted({int(r["group"]) for r in rows}) == list(range(1, len(shown) + 1))
        assert [int(r["id"]) for r in rows] == [i for g in shown for i in g]
        with page.expect_download() as info:
            page.click("#dup-download-json")
        report = json.loads(Path(info.value.path()).read_text())
        assert [g["ids"] for g in report["groups"]] == shown and report["total"] == len(shown)
    finally:
        server.close()


def test_a_read_key_is_told_it_cannot_write_and_nothing_is_removed(page, dup_index, tmp_path):
    from imgsearch.web import create_app
    from imgsearch.web.keys import KeyStore

    index_dir = tmp_path / "idx"
    shutil.copytree(dup_index[0], index_dir)
    store = KeyStore(tmp_path / "keys.json")
    read, _ = store.create("read", "reader")
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False, "RELOAD_INTERVAL": 0,
                                    "REQUIRE_KEY": True, "KEYS_FILE": str(store.path)}))
    try:
        page.goto(server.url + "/")
        page.evaluate(f"sessionStorage.setItem('imgsearch-api-key', {read!r})")
        _open_duplicates(page, server.url)
        wait_until(page, "!document.querySelector('#review-permission').hidden")
        assert "read-only" in page.text_content("#review-permission")
        before = _shown(page)
        page.locator("#dup-groups .review-actions >> nth=0").locator("button", has_text="Remove others").click()
        wait_until(page, "document.querySelector('#review-dialog').open")
        page.click("#review-confirm")
        wait_until(page, "document.querySelector('#review-status').textContent.startsWith('Removing failed')")
        assert "read-only" in page.text_content("#review-status")
        assert page.evaluate("document.querySelector('#review-status').classList.contains('error')")
        assert len(SearchEngine.open(index_dir)) == 12 and _shown(page) == before
    finally:
        server.close()


def test_the_removal_dialog_lists_the_exact_copies_that_leave_with_an_image(page, dup_index, tmp_path):
    from imgsearch.web import create_app

    index_dir = tmp_path / "idx"
    shutil.copytree(dup_index[0], index_dir)
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False, "RELOAD_INTERVAL": 0}))
    try:
        _open_duplicates(page, server.url)
        page.select_option("#dup-keep", "smallest")  # the edit of chelsea kept: the indexed chelsea goes
        wait_until(page, "document.querySelector('#dup-status').textContent.includes('keep smallest')")
        wait_until(page, "document.querySelectorAll('#dup-groups .review-actions').length > 0")
        report = SearchEngine.open(index_dir).duplicates(keep="smallest")
        copies = {g.keep: g.paths[1:] for g in report.groups if g.exact}
        number, group = next((n, g) for n, g in enumerate(_shown(page)) if len(set(g)) > 1 and group_has(g, copies))
        page.locator(f"#dup-groups .dup-group >> nth={number}").locator("button", has_text="Remove others").click()
        wait_until(page, "document.querySelector('#review-dialog').open")
        nested = page.eval_on_selector_all("#review-dialog-list li li", "els => els.map(e => e.textContent)")
        assert nested == [f"its exact copy {p}" for i in group[1:] for p in copies.get(i, [])]
        page.keyboard.press("Escape")
    finally:
        server.close()


def group_has(ids, copies) -> bool:
    return any(i in copies for i in ids[1:])
