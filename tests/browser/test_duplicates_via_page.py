"""The Duplicates view names the member a check was made against when it is not the kept image (a crop of the
original, in through the original because the kept, bordered copy does not match it), and outlines on the
kept image only what was measured on it (tests/search/test_duplicates_via.py builds the index)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.browser.helpers import wait_until
from tests.helpers import LiveServer
from tests.search.test_duplicates_via import pictures, via_index  # noqa: F401 (fixtures)

DONE = "document.querySelector('#dup-status').textContent.includes('groups at threshold')"


def test_a_member_in_through_another_member_says_which(page, via_index):  # noqa: F811
    from imgsearch.web import create_app

    index_dir, ids = via_index
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False}))
    try:
        page.goto(server.url + "/#duplicates")
        wait_until(page, DONE)
        member = page.locator(f"#dup-groups .dup-member[data-id='{ids['crop']}']")
        words = member.locator(".dup-evidence").text_content()
        assert "checked against original.png, not the kept image" in words, words
        assert member.get_attribute("data-region") is None  # its region is the original's, not the kept image's
        original = page.locator(f"#dup-groups .dup-member[data-id='{ids['original']}']")
        assert "checked against" not in original.locator(".dup-evidence").text_content()
        assert original.get_attribute("data-region") is not None  # measured on the kept image: outlined there
        with page.expect_download() as info:  # the review's download names it too, as --csv does
            page.click("#dup-download-csv")
        rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
        assert {int(r["id"]): r["via"] for r in rows} == {ids["border"]: "", ids["original"]: str(ids["border"]),
                                                          ids["crop"]: str(ids["original"])}
    finally:
        server.close()


def test_a_member_in_by_its_score_that_its_check_did_not_confirm_says_so(page, tmp_path):
    # fast-forward and rewind: one drawing turned half a turn, scoring 0.996 here; the dense check lays one on the
    # other unturned and finds the arrows drawn otherwise, which above 0.99 does not separate them (only a keypoint
    # alignment that finds them different does): the page must not list the check's numbers as if they agreed
    from imgsearch.web import create_app
    from tests.search.test_duplicates_via import _emoji_index

    engine = _emoji_index(tmp_path, ("23e9", "23ea"), [0, 5])
    server = LiveServer(create_app({"INDEX_DIR": str(engine.store.root), "WARM_UP": False}))
    try:
        page.goto(server.url + "/#duplicates")
        wait_until(page, DONE)
        words = page.locator("#dup-groups .dup-member[data-id='1'] .dup-evidence").text_content()
        assert "the dense check did not confirm it" in words and "thumbnail pixels drawn otherwise" in words, words
        kept = page.locator("#dup-groups .dup-member[data-id='0'] .dup-evidence").text_content()
        assert "did not confirm" not in kept, kept
        # nor is a part of the kept image outlined as covered by it: the alignment did not confirm anything
        assert page.locator("#dup-groups .dup-member[data-id='1']").get_attribute("data-region") is None
    finally:
        server.close()
