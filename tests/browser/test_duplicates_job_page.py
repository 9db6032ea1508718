"""The Duplicates view over a job (web/static/duplicates.js) in headless Chromium, on the fake model's index of
photos, edits and copies: progress shown while the job runs (held at its first pair to verify, so the running
state is there to see, not raced), a Cancel that stops it, then the groups with each member's size and evidence
and the outline on the kept image of the region a member covers; the contract review.js builds on."""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import ARTIFACTS, wait_until
from tests.helpers import VerificationGate

DONE = "document.querySelector('#dup-status').textContent.includes('groups at threshold')"


@pytest.fixture
def server(dup_server):
    return dup_server  # tests/conftest.py: a fresh server over the shared duplicates index


def test_progress_then_cancel_then_the_groups_with_their_evidence(page, server, monkeypatch):
    gate = VerificationGate(monkeypatch)
    try:
        page.add_init_script("window.__rendered = []; document.addEventListener('imgsearch:duplicates-rendered', "
                             "(e) => window.__rendered.push(e.detail.container.id));")
        page.goto(server.url + "/#duplicates")
        # the job is held at its first pair to verify: the page shows the stage and its counts
        wait_until(page, "document.querySelector('#dup-progress-bar').dataset.stage === 'verifying'")
        # the stage counts the shared corners first, its numbers moving; they stand still once it is held
        assert gate.entered.wait(60) and gate.counts is not None
        done, total = gate.counts
        assert 0 <= done < total  # held where the pairs are judged: none yet
        label = "document.querySelector('#dup-progress-label').textContent"
        wait_until(page, f"{label}.startsWith('Verifying pairs') && {label}.endsWith(' {done:,} of {total:,}')")
        assert page.is_visible("#dup-progress") and page.is_visible("#dup-cancel")
        bar = page.get_by_role("progressbar", name=re.compile("Verifying pairs"))
        assert bar.get_attribute("max") == str(total) and bar.get_attribute("value") == str(done)
        assert "verifying" in page.text_content("#dup-status")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-duplicates-progress.png"))

        page.click("#dup-cancel")
        wait_until(page, "document.querySelector('#dup-status').textContent.startsWith('Cancelled')")
        assert page.is_hidden("#dup-progress") and page.is_visible("#dup-restart")
        assert page.eval_on_selector_all("#dup-groups .dup-group", "els => els.length") == 0
        gate.release()

        page.click("#dup-restart")
        wait_until(page, DONE)
        assert page.is_hidden("#dup-progress") and page.is_hidden("#dup-restart")
    finally:
        gate.release()

    # every member: width x height and file size; evidence in words
    facts = page.eval_on_selector_all("#dup-groups .dup-member .dup-facts", "els => els.map(e => e.textContent)")
    assert facts and all(re.fullmatch(r"\d+ × \d+ px · [\d.]+ (B|KB|MB)", f) for f in facts), facts
    words = page.eval_on_selector_all("#dup-groups .dup-member .dup-evidence", "els => els.map(e => e.textContent)")
    assert all(words) and sum(w.startswith("kept: most pixels") for w in words) == 6  # one keeper per group
    assert any(w.startswith("exact copy") for w in words)
    assert any("cosine" in w and ("keypoints" in w or "aligned pixels" in w) and "scaled ×" in w for w in words)
    # the pill says what a check found, not the band of a cosine below the threshold
    pills = page.eval_on_selector_all("#dup-groups .dup-member", """els => els.map(e => [
        e.querySelector('.dup-evidence').textContent, e.querySelector('.band').textContent])""")
    bands = {"same picture", "near-duplicate", "same kind", "weak", "unrelated"}
    for evidence, pill in pills:
        expected = ({"keep"} if evidence.startswith("kept") else {"exact copy"} if evidence.startswith("exact copy")
                    else {"edited copy"} if evidence.startswith(("keypoints check", "dense check")) else bands)
        assert pill in expected, (evidence, pill)

    # the contract review.js uses: one event per render, groups with their keeper, one data-id per member
    assert page.evaluate("window.__rendered") == ["dup-groups"]
    contract = page.eval_on_selector_all("#dup-groups .dup-group", """els => els.map(g => ({
        keeper: g.dataset.keeper, first: g.querySelector('.dup-member').dataset.id,
        members: g.querySelectorAll('.dup-member').length, ids: g.querySelectorAll('[data-id]').length}))""")
    assert all(c["keeper"] == c["first"] and c["members"] == c["ids"] >= 2 for c in contract), contract

    # the outline: on the kept image, inside its picture, for the member pointed at
    group = page.locator("#dup-groups .dup-group:has(.dup-member[data-region])").first
    group.scroll_into_view_if_needed()
    wait_until(page, "[...document.querySelector('#dup-groups .dup-group:has(.dup-member[data-region])')"
                     ".querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
    box = group.locator(".dup-member.keeper .dup-region")
    assert box.is_visible()  # shown for the group's first member before anything is pointed at
    member = group.locator(".dup-member[data-region]").first
    member.hover()
    assert box.get_attribute("data-member") == member.get_attribute("data-id")
    assert "covered by" in box.text_content() and "showing" in member.get_attribute("class")
    outline, picture = box.bounding_box(), group.locator(".dup-member.keeper img").bounding_box()
    assert outline["width"] > 10 and outline["height"] > 10
    assert outline["x"] >= picture["x"] - 1 and outline["x"] + outline["width"] <= picture["x"] + picture["width"] + 1
    assert outline["y"] >= picture["y"] - 1 and outline["y"] + outline["height"] <= picture["y"] + picture["height"] + 1
    member.locator(".dup-hit").focus()  # by keyboard too
    assert box.is_visible() and box.get_attribute("data-member") == member.get_attribute("data-id")
    # its label ("covered by NAME") lies on the kept picture for every member, whole-picture regions included:
    # never over the kept image's name and facts below it
    for covering in page.locator("#dup-groups .dup-member[data-region]").all():
        covering.scroll_into_view_if_needed()
        covering.hover()
        label, picture = covering.evaluate("""m => {
            const keeper = m.closest('.dup-group').querySelector('.dup-member.keeper');
            const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
            return [box(keeper.querySelector('.dup-region-label')), box(keeper.querySelector('img'))]; }""")
        assert picture[0] - 3 <= label[0] and label[2] <= picture[2] + 3, (label, picture)
        assert picture[1] - 3 <= label[1] and label[3] <= picture[3] + 3, (label, picture)


@pytest.mark.parametrize("width", [360, 1280])
def test_the_view_fits_a_phone_and_a_desktop(browser, server, width):
    context = browser.new_context(viewport={"width": width, "height": 800}, is_mobile=width < 600)
    page = context.new_page()
    try:
        page.goto(server.url + "/#duplicates")
        wait_until(page, DONE)
        # nothing wider than the screen: no sideways scrolling, every member's words inside its group
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        overflow = page.eval_on_selector_all("#dup-groups .dup-member", """els => els.filter(m => {
            const g = m.closest('.dup-group').getBoundingClientRect(), r = m.getBoundingClientRect();
            return r.left < g.left - 1 || r.right > g.right + 1; }).length""")
        assert overflow == 0
    finally:
        context.close()
