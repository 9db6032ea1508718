"""Screenshots of the page for the docs site (docs/screenshots/), from a running server such as `make demo`'s.

    python scripts/page_screenshots.py http://127.0.0.1:8000 ID [--out docs/screenshots]
    python scripts/page_screenshots.py http://127.0.0.1:8000 --duplicates

Opens /?id=ID at a laptop's size (1280x800) and a phone's (390x844) in headless Chromium (Playwright),
waits for the results and their thumbnails, and writes demo-desktop.png and demo-phone.png, reduced to
256 colours to stay small.  ``--duplicates``: the Duplicates view (#duplicates) instead, its first group
scrolled into view with the region its second member covers outlined on the kept image, at 1280x800 and
360x740: duplicates-desktop.png and duplicates-phone.png."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser.helpers import CHROMIUM, FLAGS, wait_until  # noqa: E402

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
DUPLICATE_SIZES = {"desktop": (1280, 800), "phone": (360, 740)}


def save_small(png: bytes, path: Path) -> None:
    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("id", type=int, nargs="?")
    parser.add_argument("--duplicates", action="store_true", help="the Duplicates view")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    if args.id is None and not args.duplicates:
        parser.error("give an image ID to search by, or --duplicates")
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    if args.duplicates:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            for name, size in DUPLICATE_SIZES.items():
                save_small(_duplicates_view(browser, args.url, size, phone=name == "phone"),
                           args.out / f"duplicates-{name}.png")
            browser.close()
        return

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for name, (width, height) in SIZES.items():
            phone = name == "phone"
            page = browser.new_page(viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone)
            page.goto(f"{args.url}/?id={args.id}")
            wait_until(page, "document.querySelector('#status').textContent.includes('results for')", 120)
            wait_until(page, "[...document.querySelectorAll('#results img')].slice(0, 12)"
                             ".every(i => i.complete && i.naturalWidth > 0)", 60)
            save_small(page.screenshot(), args.out / f"demo-{name}.png")
            page.close()
        browser.close()


def _duplicates_view(browser, url: str, size: tuple[int, int], phone: bool) -> bytes:
    page = browser.new_page(viewport={"width": size[0], "height": size[1]}, is_mobile=phone, has_touch=phone)
    page.goto(f"{url}/#duplicates")
    wait_until(page, "document.querySelector('#dup-status').textContent.includes('groups at threshold')", 600)
    group = page.locator("#dup-groups .dup-group:has(.dup-member[data-region])").first
    group.locator("h3").scroll_into_view_if_needed()
    page.evaluate("document.querySelector('#dup-groups .dup-group:has(.dup-member[data-region]) h3')"
                  ".scrollIntoView({block: 'start'})")
    wait_until(page, "[...document.querySelectorAll('#dup-groups .dup-group')[0].querySelectorAll('img')]"
                     ".every(i => i.complete && i.naturalWidth > 0)", 60)
    members = group.locator(".dup-member[data-region]")
    (members.nth(1) if members.count() > 1 else members.first).locator(".dup-hit").focus()
    if phone:  # the controls take the phone's first screen: show the group
        page.evaluate("document.querySelector('#dup-groups .dup-group:has(.dup-member[data-region]) h3')"
                      ".scrollIntoView({block: 'start'})")
    else:
        page.evaluate("window.scrollTo(0, 0)")
    png = page.screenshot()
    page.close()
    return png


if __name__ == "__main__":
    main()
