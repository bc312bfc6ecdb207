"""Playwright driving Debian's Chromium against the app on loopback.

The browser is the system's ``/usr/bin/chromium`` (``make test`` installs it); when it
is missing these tests skip, unless ``AGENTPLATFORM_REQUIRE_BROWSER`` is set (as
``make test`` does), so CI cannot pass without them by accident. Each test saves a
screenshot of every page it visits under ``test-output/screenshots/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("AGENTPLATFORM_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
BASE_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
             "--no-first-run", "--disable-component-update", "--disable-sync"]


def _need_browser() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"Chromium not found at {CHROMIUM} (make test installs Debian's chromium)"
        if os.environ.get("AGENTPLATFORM_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
async def launch():
    """``await launch(extra_args)`` → a new page in a fresh headless Chromium."""
    _need_browser()
    from playwright.async_api import async_playwright

    browsers = []
    async with async_playwright() as pw:
        async def open_page(extra: list[str] | None = None):
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=BASE_ARGS + (extra or []))
            browsers.append(browser)
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15000)
            return page

        try:
            yield open_page
        finally:
            for browser in browsers:
                await browser.close()


@pytest.fixture
def shot(request):
    """``await shot(page, "name")`` saves a full-page screenshot for this test."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]

    async def take(page, name: str) -> Path:
        path = SHOTS / f"{prefix}--{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
