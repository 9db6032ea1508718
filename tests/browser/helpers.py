"""What the page tests share: where Chromium and the screenshots are, the page's error watch, JavaScript waits.

Plain functions, imported as ``from tests.browser.helpers import ...``; the ``browser`` and ``page``
fixtures that use them are in tests/browser/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.helpers import ROOT

CHROMIUM = os.environ.get("IMGSEARCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("IMGSEARCH_ARTIFACTS", ROOT / "build" / "test-artifacts"))
# This machine's network is closed: without these, Chromium keeps trying to reach Google's hosts.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]

# Records every Content-Security-Policy violation the page meets, from its first script on.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline code'}`));
"""


def watch(context):
    """Collect JavaScript errors and CSP violations (console and events) of every page of a context."""
    found = {"errors": [], "csp": []}
    context.add_init_script(CSP_RECORDER)

    def on_page(pg):
        pg.on("pageerror", lambda exc: found["errors"].append(str(exc)))
        pg.on("console", lambda msg: "Content Security Policy" in msg.text and found["csp"].append(msg.text))

    context.on("page", on_page)
    return found


def csp_violations(pg, found) -> list[str]:
    return found["csp"] + pg.evaluate("window.__cspViolations || []")


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression until it is true.

    Not page.wait_for_function: Playwright compiles its in-page polling with
    eval, which the page's Content-Security-Policy rightly forbids;
    page.evaluate goes through the DevTools protocol, which CSP does not govern.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {expression}")
        page.wait_for_timeout(50)


def result_ids(page):
    return page.eval_on_selector_all("#results .hit", "els => els.map(e => Number(e.dataset.id))")
