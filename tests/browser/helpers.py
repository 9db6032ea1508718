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


def wait_for_search_by_id(page, target) -> None:
    """Wait for the results of a search by the indexed image ``target``: the query chip's title ends with its id
    and the status names its file (\"8 results for chelsea.jpg in 21 ms\")."""
    wait_until(page, "(() => { const t = document.querySelector('#query-caption').title; "
                     f"return t.endsWith('(id {int(target)})') && document.querySelector('#status').textContent"
                     ".includes('results for ' + t.slice(0, t.lastIndexOf(' (id ')).split('/').pop() + ' '); })()")


def result_ids(page):
    return page.eval_on_selector_all("#results .hit", "els => els.map(e => Number(e.dataset.id))")


AXE_PACKAGE = "axe-core@4.14.1"


def axe_script() -> Path:
    """axe-core's axe.min.js, installed from npm into the run's cache on first use (under a lock, in a staging
    folder renamed into place when whole, as the emoji sample is: indexer/inputs/samples.py)."""
    import fcntl
    import subprocess
    import tempfile

    from imgsearch.indexer.config import default_cache_dir

    prefix = Path(default_cache_dir()) / "npm-axe"
    script = prefix / "node_modules" / "axe-core" / "axe.min.js"
    if script.is_file():
        return script
    npm = shutil.which("npm")
    assert npm, "the accessibility check needs npm (Node.js) to install axe-core"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if script.is_file():
            return script
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=prefix))
        try:
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging), AXE_PACKAGE],
                           check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(prefix / "node_modules", ignore_errors=True)
            os.replace(staging / "node_modules", prefix / "node_modules")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return script


def axe_violations(page, impacts=("serious", "critical")) -> list[str]:
    """Run axe-core in the page (loaded into a context made with bypass_csp=True: it comes inline) and return
    its violations of the given impacts, one line each with the elements it names."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script()))
    found = page.evaluate("async () => (await axe.run(document)).violations.map(v => ({id: v.id, impact: v.impact, "
                          "help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))")
    return [f"{v['impact']}: {v['id']} ({v['help']}) at {v['nodes'][:5]}" for v in found if v["impact"] in impacts]


def box_in_view(page, selector: str) -> bool:
    """Whether the element's whole box lies inside the viewport, its middle not covered by anything else."""
    return page.evaluate(
        """sel => { const el = document.querySelector(sel); if (!el) return false;
                    const r = el.getBoundingClientRect();
                    const inside = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&
                                   r.bottom <= innerHeight && r.right <= innerWidth;
                    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
                    return inside && !!top && el.contains(top); }""", selector)
