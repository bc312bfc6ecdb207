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
    from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
    from agentplatform.testing.stack import local_server

    tmp = tmp_path_factory.mktemp("pages")
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600) as sim, \
            local_server(make_settings(tmp, openai_url=sim.url)) as server:
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


async def test_the_name_pattern_compiles_as_browsers_read_it_and_refuses_a_bad_name(
        seeded: Seeded, browser) -> None:
    """Browsers compile ``pattern`` with the ``v`` flag, where an unescaped ``-`` in a
    class is a syntax error (and the browser then ignores the pattern)."""
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/new")
        compiles = await page.eval_on_selector(
            "#name", "el => { try { new RegExp(el.pattern, 'v'); return true; }"
                     " catch (e) { return String(e); } }")
        await page.fill("#name", "Bad Name")
        bad = await page.eval_on_selector("#name", "el => el.validity.patternMismatch")
        await page.fill("#name", "good-name_2")
        good = await page.eval_on_selector("#name", "el => el.validity.valid")
    finally:
        await context.close()
    assert compiles is True and bad is True and good is True


async def test_one_save_shows_every_error_and_the_yaml_tab_has_one_save_button(
        seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/front-desk")
        await page.fill("#f-temp", "5")
        await page.fill("#f-max", "0")
        await page.click("#form-actions button[type=submit]")
        await page.locator('[data-error-for="temperature"]').wait_for()
        shown = [await page.locator(f'[data-error-for="{f}"]').is_visible()
                 for f in ("temperature", "max_output_tokens")]
        await page.screenshot(path=str(SHOTS / "page-390--edit-every-error.png"), full_page=True)
        await page.goto(seeded.base_url + "/agents/front-desk?tab=yaml")
        buttons = await page.locator("button[type=submit]:visible").all_inner_texts()
    finally:
        await context.close()
    assert shown == [True, True]
    assert [b for b in buttons if "Save" in b] == ["Save YAML"]


async def test_a_new_offline_desk_is_created_from_its_template(seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/new")
        preselected = await page.eval_on_selector("input[name=template]:checked", "e => e.value")
        await page.check("#t-offline-desk")
        await page.fill("#name", "night-desk")
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=Created night-desk.yaml")
        await page.screenshot(path=str(SHOTS / "page-390--agent-created.png"), full_page=True)
        model = await page.eval_on_selector("#f-model", "e => e.value")
    finally:
        await context.close()
    assert preselected == "realtime-desk"  # the test server has an OpenAI key
    assert model == "local/offline"


async def test_a_call_record_reads_as_labelled_rows_with_times_and_one_end_reason(
        seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(f"{seeded.base_url}/calls/{seeded.ended_call}")
        ended = await page.inner_text("#ended")
        connected = page.locator('#events tr[data-kind="model_connected"]')
        labels = await connected.locator("dt").all_inner_texts()
        values = await connected.locator("dd").all_inner_texts()
        times = await page.locator("#transcript td.at").all_inner_texts()
        bar_labels = await page.eval_on_selector_all(
            "svg.chart text", "els => els.map(e => e.textContent).filter(t => t.startsWith('turn'))")
        first_bar = await page.get_attribute('svg.chart g.turn[data-turn="1"]', "data-ms")
        legend = await page.locator("ul.legend li").all_inner_texts()
        latency_cells = await page.locator('#transcript td[data-label="Latency"]').all_inner_texts()
    finally:
        await context.close()
    assert "caller hung up" in ended and "(caller hung up)" not in ended
    assert labels == ["Model", "Connect"] and values == ["openai/gpt-realtime", "412 ms"]
    assert len(times) == 5 and all(":" in t for t in times)
    # One latency figure: the chart's bar, the transcript and the record agree.
    assert bar_labels == ["turn 1", "turn 2"] and first_bar == "1107"
    assert latency_cells[0] == "1107 ms"
    assert legend[:2] == ["end-of-turn wait", "model first audio"] and "tools" in legend


async def test_chat_shows_what_end_call_does_and_ends_the_conversation(
        seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/desk/chat")
        await page.fill("#chat-input", "ok, bye")
        await page.press("#chat-input", "Enter")
        await page.wait_for_selector("text=The agent ended the conversation")
        log = await page.inner_text("#chat-log")
        disabled = await page.is_disabled("#chat-input")
        await page.screenshot(path=str(SHOTS / "page-390--chat-ended.png"), full_page=True)
        await page.click("#chat-new")
        enabled_again = await page.is_enabled("#chat-input")
    finally:
        await context.close()
    assert "goodbye" in log and "would now hang up" in log
    assert "Say a short goodbye now" not in log  # the instruction to the model stays hidden
    assert disabled and enabled_again


async def test_a_live_call_appears_by_itself_shows_its_transcript_and_an_admin_hangs_it_up(
        seeded: Seeded, browser) -> None:
    from agentplatform.testing.twilio_caller import TwilioCaller

    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/calls")
        rows_before = await page.locator("#calls tr[data-call]").count()
        async with TwilioCaller(seeded.base_url, to="+15555550100",
                                from_="+15555550177") as caller:
            await caller.wait_for_audio(10)
            # No reload: the list fetches itself and the new call shows up, live.
            newest = page.locator("#calls tr[data-call]").first
            await page.wait_for_function(
                f"() => document.querySelectorAll('#calls tr[data-call]').length > {rows_before}",
                timeout=15000)
            assert "live" in await newest.inner_text()
            await page.screenshot(path=str(SHOTS / "page-390--calls-live.png"), full_page=True)
            await newest.locator("a").first.click()
            await page.locator("#live-transcript tr.turn-assistant").first.wait_for(timeout=15000)
            await page.screenshot(path=str(SHOTS / "page-390--call-live-running.png"),
                                  full_page=True)
            await page.click("#hangup")
            code = await caller.wait_closed(10)
            await page.wait_for_selector("#ended >> text=admin hung up", timeout=15000)
            await page.screenshot(path=str(SHOTS / "page-390--call-hung-up.png"), full_page=True)
    finally:
        await context.close()
    assert code is not None


async def test_a_number_is_pointed_at_this_server_on_twilio_from_the_numbers_page(
        tmp_path, browser) -> None:
    from agentplatform.testing.stack import local_server
    from agentplatform.testing.twilio_rest_server import (
        SIMULATED_ACCOUNT_SID,
        TwilioRestServer,
    )

    async with TwilioRestServer(numbers=["+15555550100"]) as twilio:
        settings = make_settings(tmp_path, twilio_account_sid=SIMULATED_ACCOUNT_SID,
                                 twilio_api_base_url=twilio.url, public_url="http://voice.test")
        async with local_server(settings) as server:
            context, page = await open_at(browser, 390)
            try:
                await page.goto(server.base_url + "/numbers")
                voice = await page.inner_text("#voice-url")
                await page.click('[data-number="+15555550100"] button')
                await page.wait_for_selector("#number-ok")
                await page.screenshot(path=str(SHOTS / "page-390--numbers-pointed.png"),
                                      full_page=True)
            finally:
                await context.close()
    assert voice == "http://voice.test/twilio/voice"
    assert twilio.number_of("+15555550100")["voice_url"] == voice


async def test_every_page_passes_axe_and_shows_where_the_keyboard_is(
        seeded: Seeded, browser) -> None:
    from axe_playwright_python.async_playwright import Axe

    axe = Axe()
    context, page = await open_at(browser, 390)
    found: dict[str, list[str]] = {}
    try:
        icon = await page.request.get(seeded.base_url + "/favicon.ico")
        for name, path in page_paths(seeded).items():
            await page.goto(seeded.base_url + path)
            results = await axe.run(page)
            problems = [f"{v['id']} ({v['impact']}): "
                        + "; ".join(n["target"][0] for n in v["nodes"][:3])
                        for v in results.response["violations"]]
            if problems:
                found[name] = problems
        await page.goto(seeded.base_url + "/agents/front-desk")
        await page.keyboard.press("Tab")
        ring = await page.evaluate("""() => {
            const s = getComputedStyle(document.activeElement);
            return [document.activeElement.tagName, s.outlineStyle, s.outlineWidth]; }""")
        has_icon = await page.locator('link[rel="icon"]').count()
    finally:
        await context.close()
    (SHOTS.parent / "axe-violations.json").write_text(json.dumps(found, indent=1))
    assert not found, found
    assert ring[1] != "none" and ring[2] != "0px", ring
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg")
    assert has_icon == 1


async def test_an_offline_agent_s_rules_are_edited_without_yaml(seeded: Seeded, browser) -> None:
    context, page = await open_at(browser, 390)
    try:
        await page.goto(seeded.base_url + "/agents/desk")
        notice = await page.inner_text("#prompt-rules-note")
        await page.click("#prompt-rules-note a")
        await page.fill('[name="new_rule.match"]', "park")
        await page.fill('[name="new_rule.reply"]', "Parking is free behind the building.")
        await page.screenshot(path=str(SHOTS / "page-390--edit-rules-filled.png"), full_page=True)
        await page.click("#form-actions button[type=submit]")
        await page.wait_for_selector("text=Saved.")
        rules = await page.eval_on_selector_all('[data-rule] input[name$=".match"]',
                                                "els => els.map(e => e.value)")
    finally:
        await context.close()
    assert "answered by its rules" in notice
    assert rules[:3] == ["hours|open", "bye", "park"]
