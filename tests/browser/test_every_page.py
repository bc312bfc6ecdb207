"""Every admin page in Debian's Chromium, at a phone's width (390 px) and a desktop's
(1280 px): no page scrolls sideways, wide tables scroll inside themselves, the editor's
tabs wrap, and the chat box keeps its width. One browser and one seeded server serve
the whole module; each page's screenshot is saved under ``test-output/screenshots/``."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from .conftest import BASE_ARGS, CHROMIUM, SHOTS, _need_browser
from .pages import Seeded, make_settings, page_paths, seed

pytestmark = pytest.mark.asyncio(loop_scope="module")
WIDTHS = (390, 1280)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(tmp_path_factory):
    from agentplatform.testing.stack import local_server

    tmp = tmp_path_factory.mktemp("pages")
    async with local_server(make_settings(tmp)) as server:
        yield await seed(server)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    _need_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=BASE_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_at(browser, width: int):
    context = await browser.new_context(viewport={"width": width, "height": 844})
    page = await context.new_page()
    page.set_default_timeout(15000)
    return context, page


async def page_width(page) -> dict[str, int]:
    return await page.evaluate("""() => ({
        scroll: document.documentElement.scrollWidth, inner: window.innerWidth})""")


@pytest.mark.parametrize("width", WIDTHS)
async def test_no_page_scrolls_sideways(seeded: Seeded, browser, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page = await open_at(browser, width)
    measured: dict[str, int] = {}
    try:
        for name, path in page_paths(seeded).items():
            response = await page.goto(seeded.base_url + path)
            assert response is not None and response.status == 200, (name, response)
            await page.wait_for_load_state("load")
            measured[name] = (await page_width(page))["scroll"]
            await page.screenshot(path=str(SHOTS / f"page-{width}--{name}.png"), full_page=True)
    finally:
        await context.close()
    (SHOTS.parent / f"page-widths-{width}.json").write_text(json.dumps(measured, indent=1))
    too_wide = {name: w for name, w in measured.items() if w > width}
    assert not too_wide, f"pages wider than {width} px: {too_wide}"


async def test_the_editor_tabs_wrap_and_every_tab_is_on_screen_at_phone_width(
        seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/front-desk")
        boxes = await page.eval_on_selector_all(
            ".tabs a", "els => els.map(e => e.getBoundingClientRect().right)")
    finally:
        await context.close()
    assert len(boxes) >= 5 and max(boxes) <= 390


async def test_the_chat_box_keeps_its_width_at_phone_width(seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/front-desk/chat")
        box = await page.locator("#chat-input").bounding_box()
    finally:
        await context.close()
    assert box is not None and box["width"] >= 200
