"""Real headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against the real hub.

Playwright's own browser downloads are never used: the browser is the system's Chromium.
Without it the tests skip locally, and fail when ``NBEXEC_REQUIRE_BROWSER=1`` (CI sets it).
Screenshots of the page's main states go to each test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("NBEXEC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: every wait in a browser test; the machine is small and shared
TIMEOUT_MS = 60_000


def _browser_missing() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium per test module (each test gets its own context, i.e. its own cookies).

    Not per session: Playwright's sync API keeps an event loop running in this thread
    while it is open, which would break every asyncio-based test collected after it.
    """
    missing = _browser_missing()
    if missing:
        if os.environ.get("NBEXEC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing}, and NBEXEC_REQUIRE_BROWSER=1")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class BrowserUser:
    """One logged-in browser context: pages, screenshots, and what went wrong in them."""

    def __init__(self, hub: Any, context: Any, user: str, shots: Path) -> None:
        self.hub = hub
        self.context = context
        self.user = user
        self.shots = shots
        self.errors: list[str] = []
        self.page = self.new_page()

    def new_page(self, width: int = 1280, height: int = 900) -> Any:
        page = self.context.new_page()
        page.set_viewport_size({"width": width, "height": height})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return page

    def login(self) -> None:
        page = self.page
        # next=/hub/home: the hub's default after login would start the server
        page.goto(f"{self.hub.url}/hub/login?next=%2Fhub%2Fhome")
        page.fill("#username_input", self.user)
        page.fill("#password_input", "test-password")
        with page.expect_navigation():
            page.click("#login_submit")

    def open_service_page(self, page: Any = None, query: str = "") -> Any:
        page = page or self.page
        page.goto(self.hub.service_url("") + query)
        page.wait_for_selector("body[data-nbexec-loaded='true']")
        return page

    def shot(self, name: str, page: Any = None) -> Path:
        path = self.shots / f"{name}.png"
        (page or self.page).screenshot(path=str(path), full_page=True)
        return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """Remember each phase's outcome on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@pytest.fixture
def browser_user(
    chromium: Any, realhub: Any, shots: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """``browser_user("alice", hub=None)``: a fresh browser context logged in as that user
    (to the session's hub unless another `RealHub` is given)."""
    made: list[BrowserUser] = []

    def make(user: str, hub: Any = None) -> BrowserUser:
        context = chromium.new_context()
        bu = BrowserUser(hub or realhub, context, user, shots)
        made.append(bu)
        bu.login()
        return bu

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, bu in enumerate(made):
        if failed:  # what the page showed when the test failed
            for j, page in enumerate(bu.context.pages):
                page.screenshot(path=str(shots / f"failed-{i}-{bu.user}-{j}.png"), full_page=True)
        bu.context.close()
    # a JavaScript exception in the page is a bug even when the test's checks passed
    errors = [e for bu in made for e in bu.errors]
    assert not errors, errors
