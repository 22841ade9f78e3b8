"""Screenshot of the running dashboard for the README: `uv run python scripts/screenshot_dashboard.py [QUERY]`.

Needs a running stack (`make run`, better with some history: see the README's "What to do first").
Writes docs/img/dashboard.png at 1280 px wide; QUERY is the dashboard's query string (default: last 7 days).
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright

from shoppulse.settings import PROJECT_ROOT, get_settings
from shoppulse.stack.browser import ensure_chromium


def main() -> None:
    settings = get_settings()
    query = sys.argv[1] if len(sys.argv) > 1 else "preset=7d&tz=UTC&currency=USD"
    target = PROJECT_ROOT / "docs" / "img" / "dashboard.png"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=ensure_chromium(settings))
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        page.goto(f"http://127.0.0.1:{settings.api_port}/dashboard?{query}")
        page.wait_for_function("window.shoppulse && window.shoppulse.refreshes > 0 && !window.shoppulse.busy")
        page.wait_for_function("document.getElementById('live').dataset.state === 'on'")
        page.screenshot(path=str(target), full_page=True)
        browser.close()
    print(f"wrote {target.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
