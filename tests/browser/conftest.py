"""Headless Chromium (Debian's package, driven by Playwright; no browser download) against the real admin page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.conftest import ROOT

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: Playwright's sync API runs an event loop in this thread until it is closed,
    and the suite's asyncio tests that come after need the thread to themselves."""
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is missing: `make test` installs it (scripts/ensure_chromium.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageProblems:
    """Everything the page complained about: script errors and console errors (CSP violations among them)."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        # A refused API call logs "Failed to load resource" by design (a 401 for a wrong token): not a problem.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, PageProblems]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems = PageProblems(page)
    yield page, problems
    context.close()
    assert problems.errors == []


def screenshot(page: Page, name: str) -> Path:
    """Saved under test-artifacts/screenshots/ (CI keeps the folder as an artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
