"""Browser fixtures: Python Playwright driving Debian's Chromium (no browser download), offline.

Every page records console errors, failed requests (network errors and HTTP >= 400) and any request
that would leave the machine (those are aborted): the dashboard and the docs must need none.
Screenshots go to .shoppulse/screenshots/ (ignored by git).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, Route, sync_playwright

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.browser import ensure_chromium

SCREENSHOTS = PROJECT_ROOT / ".shoppulse" / "screenshots"
LOOPBACK = {"127.0.0.1", "localhost"}


@dataclass
class PageProblems:
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    def assert_none(self) -> None:
        assert self.console_errors == [], self.console_errors
        assert self.failed_requests == [], self.failed_requests
        assert self.external_requests == [], self.external_requests


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, which
    would make later tests' `asyncio.run()` (e.g. Dagster's backfill daemon) fail."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, settings: Settings) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=ensure_chromium(settings))
    yield browser
    browser.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., tuple[Page, PageProblems]]]:
    """Factory of pages (en-US, UTC) whose problems are recorded; closed after the test."""
    contexts = []

    def make(width: int = 1280, height: int = 900) -> tuple[Page, PageProblems]:
        context = browser.new_context(locale="en-US", timezone_id="UTC", viewport={"width": width, "height": height})
        contexts.append(context)
        problems = PageProblems()

        def only_loopback(route: Route) -> None:
            if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith("data:"):
                route.continue_()
            else:
                problems.external_requests.append(route.request.url)
                route.abort()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                problems.console_errors.append(message.text)

        def on_failed(request: Request) -> None:
            if request.url not in problems.external_requests:
                problems.failed_requests.append(f"{request.url}: {request.failure}")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                problems.failed_requests.append(f"{response.url}: HTTP {response.status}")

        context.route("**/*", only_loopback)
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.console_errors.append(f"uncaught: {error}"))
        page.on("requestfailed", on_failed)
        page.on("response", on_response)
        return page, problems

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
