"""What the browser tests share: Debian's Chromium driven by Playwright, logging in, screenshots."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the networking flags Chromium keeps calling home, which this sandboxed machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
PASSWORD = "correct-horse-battery"  # the factories' password
SLOW = 30_000  # ms: the longest a page waits for a job's next state
SCREENSHOTS = Path(os.environ.get("ATELIER_SCREENSHOTS_DIR", "test-results/screenshots"))
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@contextmanager
def running_chromium() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are plain
    # synchronous code, so Django's async-safety guard is lifted for this process.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]  # only the browser tests' process needs it


def log_in(context: BrowserContext, email: str) -> Page:
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/studio/*/")
    return page


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """The page (or, `full_page=False`, the screen as the person sees it: sticky bars in place)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


def wait_until_still(element: Locator, *, timeout: float = 10, interval: float = 0.4) -> None:
    """Waits until two pictures of `element` taken `interval` apart are the same: Chromium's own
    media controls (out of reach of the page's scripts) spin a while after a clip has loaded."""
    deadline = time.monotonic() + timeout
    previous = element.screenshot(animations="disabled")
    while time.monotonic() < deadline:
        time.sleep(interval)  # the spinner turns between two pictures; a still element does not
        current = element.screenshot(animations="disabled")
        if current == previous:
            return
        previous = current
    raise AssertionError(f"{element} kept moving for {timeout} s")


# Every page of a context reports to the test what the Content-Security-Policy refused
# (`securitypolicyviolation` events) and what htmx refused to evaluate, across navigations.
_REPORT_REFUSALS = """
document.addEventListener("securitypolicyviolation", (event) => window.reportRefusal(
  `${event.effectiveDirective} refused ${event.blockedURI || "inline code"}`
  + ` at ${event.sourceFile}:${event.lineNumber}`));
for (const name of ["htmx:evalDisallowedError", "htmx:syntax:error"]) {
  document.addEventListener(name, (event) => window.reportRefusal(
    `${name} on ${event.target.outerHTML.slice(0, 120)}`));
}
"""


class PolicyWatch:
    """What the pages of `context` were refused: CSP violations (as events and as the console's
    "Content Security Policy" messages) and htmx's refusals to evaluate code from the page."""

    def __init__(self, context: BrowserContext) -> None:
        self.refusals: list[str] = []
        context.expose_function("reportRefusal", self._refused)
        context.add_init_script(_REPORT_REFUSALS)
        context.on("console", self._console)

    def _refused(self, what: str) -> None:
        self.refusals.append(what)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.refusals.append(f"console: {message.text}")
