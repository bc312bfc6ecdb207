"""The admin screens as a person uses them, in a real browser: sign in, edit an agent
(a field error, then a save that changes the file), chat (a streamed answer and a tool
call), and a test call from the browser with a WAV file as the microphone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agentplatform.agents.yamlio import load_document, to_plain
from agentplatform.audio.frames import silence
from agentplatform.audio.wav import write_wav
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, ToolRule
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.web.passwords import hash_password

PASSWORD = "open sesame 42"
FRONT_DESK = """\
# Hand-written front desk; this comment must survive an edit in the screen.
name: front-desk
description: Answers the main line.
model: openai/gpt-realtime
voice: marin
greeting: Thanks for calling the clinic, how can I help?
prompt: You answer the phone for a clinic.
phone_numbers: ["+15555550100"]
tools:
  - type: webhook
    name: check_availability
    description: Free slots on a day.
    url: {url}
    allow_private_network: true
  - type: end_call
"""
DESK = """\
name: desk
description: The offline rules desk.
model: local/offline
voice_streaming: false
rules:
  - match: "slot|appointment"
    reply: Let me look that up for you.
    tool: {{name: check_availability, arguments: {{day: monday}}}}
    after_tool: "The first free slot is {{output.first}}. Shall I book it for you?"
fallback_reply: Sorry, I can only help with slots.
tools:
  - type: webhook
    name: check_availability
    description: Free slots on a day.
    url: {url}
    allow_private_network: true
"""


class SlotService:
    """The webhook behind ``check_availability``: a real HTTP endpoint on loopback."""

    async def __aenter__(self) -> SlotService:
        self.calls = 0
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/slots"

    async def _handle(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        await reader.readexactly(length)
        self.calls += 1
        body = json.dumps({"first": "Monday at 9:30"}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()


def make_agents(tmp_path: Path, slot_url: str) -> Path:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front-desk.yaml").write_text(FRONT_DESK.format(url=slot_url))
    (agents / "desk.yaml").write_text(DESK.format(url=slot_url))
    return agents


def settings(tmp_path: Path, openai_url: str = ""):
    return simulated_settings(
        agents_dir=tmp_path / "agents", database_url=f"sqlite:///{tmp_path / 'calls.db'}",
        openai_url=openai_url, admin_password_hash=hash_password(PASSWORD, n=2**10))


async def sign_in(page, base_url: str, shot) -> None:
    await page.goto(base_url + "/")
    assert "/login" in page.url  # the screens need a sign-in
    await shot(page, "login")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("table#agents")
    assert await page.locator("nav .me").inner_text() != ""


async def test_sign_in_edit_an_agent_see_a_field_error_then_save(tmp_path, launch, shot):
    agents = make_agents(tmp_path, "http://127.0.0.1:9/none")
    path = agents / "front-desk.yaml"
    before = path.read_bytes()
    async with local_server(settings(tmp_path)) as server:
        page = await launch()
        # A wrong password first.
        await page.goto(server.base_url + "/login")
        await page.fill("input[name=password]", "wrong")
        await page.click("button[type=submit]")
        assert "Wrong user name or password" in await page.inner_text("[role=alert]")
        await sign_in(page, server.base_url, shot)
        await shot(page, "agents")
        assert await page.locator("tr[data-agent=front-desk]").count() == 1

        await page.click("tr[data-agent=front-desk] >> text=Edit")
        await page.wait_for_selector("#agent-form")
        await shot(page, "edit-general")
        await page.fill("#f-temp", "5")
        await page.click("#form-actions button[type=submit]")
        error = page.locator('[data-error-for="temperature"]')
        await error.wait_for()
        assert "less than or equal to 2" in await error.inner_text()
        await shot(page, "edit-field-error")
        assert path.read_bytes() == before  # nothing on disk changed

        await page.fill("#f-temp", "0.7")
        await page.fill("#f-greeting", "Hello from the browser.")
        await page.click(".tabs a[data-tab=speech]")
        await shot(page, "edit-speech")
        await page.click(".tabs a[data-tab=tools]")
        await shot(page, "edit-tools")
        await page.click(".tabs a[data-tab=advanced]")
        await page.fill("#f-advanced", '{"openai_realtime": ')
        assert "not valid JSON" in await page.inner_text("#f-advanced + .json-status")
        await page.fill("#f-advanced", "{}")
        await page.click("#form-actions button[type=submit]")
        await page.wait_for_selector("text=Saved.")
        await page.click(".tabs a[data-tab=yaml]")
        await shot(page, "edit-yaml")
    text = path.read_text()
    plain = to_plain(load_document(text, file="x"))
    assert plain["greeting"] == "Hello from the browser." and plain["temperature"] == 0.7
    assert "# Hand-written front desk" in text


async def test_chat_shows_a_streamed_answer_and_a_tool_call(tmp_path, launch, shot):
    rule = ToolRule("slot", "check_availability", '{"day": "monday"}')
    async with SlotService() as slots, OpenAIRealtimeServer(pace=1.0, reply_ms=1500,
                                                            tool_rules=[rule]) as sim:
        make_agents(tmp_path, slots.url)
        async with local_server(settings(tmp_path, sim.url)) as server:
            page = await launch()
            await sign_in(page, server.base_url, shot)
            await page.click("tr[data-agent=front-desk] >> text=Chat")
            await page.wait_for_selector("#chat-input")
            # Record each state the answer passes through while it arrives.
            await page.evaluate("""() => {
                window.__answerStates = new Set();
                new MutationObserver(() => {
                  const last = [...document.querySelectorAll('#chat-log .agent')].pop();
                  if (last) window.__answerStates.add(last.textContent);
                }).observe(document.getElementById('chat-log'),
                           {subtree: true, characterData: true, childList: true});
            }""")
            await page.fill("#chat-input", "Do you have a slot on Monday?")
            await page.press("#chat-input", "Enter")
            result = page.locator("#chat-log .tool", has_text="Monday at 9:30")
            await result.wait_for()
            await page.wait_for_function("() => document.getElementById('chat-status')"
                                         ".textContent === ''")
            await shot(page, "chat")
            tool_lines = await page.locator("#chat-log .tool").all_inner_texts()
            states = await page.evaluate("[...window.__answerStates].length")
            answers = await page.locator("#chat-log .agent").all_inner_texts()
    assert any("check_availability(" in line and '"day"' in line for line in tool_lines)
    assert slots.calls == 1
    assert answers and answers[-1]  # the answer after the tool result
    assert states > 3  # the answer grew piece by piece, not in one block
    assert sim.sessions[0].get("output_modalities") == ["text"]


def caller_wav(tmp_path: Path) -> Path:
    """A spoken question (the local Piper voice), then silence, as the fake microphone."""
    from agentplatform.speech.tts_local import synthesize_sentences, voice_rate

    rate = voice_rate()
    pcm = silence(1500, rate) + b"".join(synthesize_sentences(
        "Hello. Do you have a free slot on Monday morning?")) + silence(4000, rate)
    path = tmp_path / "caller.wav"
    write_wav(path, pcm, rate)
    return path


async def test_a_browser_call_with_a_wav_microphone_hears_the_agent(tmp_path, launch, shot):
    make_agents(tmp_path, "http://127.0.0.1:9/none")
    wav = caller_wav(tmp_path)
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=1200,
                                    caller_texts=["Do you have a free slot on Monday morning?"]) as sim:
        async with local_server(settings(tmp_path, sim.url)) as server:
            page = await launch(["--use-fake-ui-for-media-stream",
                                 "--use-fake-device-for-media-stream",
                                 f"--use-file-for-fake-audio-capture={wav}",
                                 "--autoplay-policy=no-user-gesture-required"])
            await sign_in(page, server.base_url, shot)
            await page.click("tr[data-agent=front-desk] >> text=Call")
            await page.wait_for_selector("#call-start")
            await shot(page, "call-ready")
            await page.click("#call-start")
            # The greeting, then the answer to the question the WAV asks.
            await page.wait_for_function(
                "() => Number(document.getElementById('call-heard').dataset.bytes) > 8000",
                timeout=20000)
            user_turn = page.locator("#transcript tr.turn-user")
            await user_turn.first.wait_for(timeout=30000)
            await page.locator("#transcript tr.turn-assistant").nth(1).wait_for(timeout=20000)
            heard = int(await page.get_attribute("#call-heard", "data-bytes"))
            sent = int(await page.inner_text("#call-sent"))
            await shot(page, "call-live")
            await page.click("#call-hangup")
            await page.wait_for_selector("text=You hung up.")
            await shot(page, "call-ended")
            transcript = await page.inner_text("#transcript")
    assert sent > 8000 and heard > 8000
    assert "Do you have a free slot on Monday morning?" in transcript
    # The call went through the bridge: the agent's greeting was asked of the model.
    assert any("Thanks for calling the clinic" in (i or "") for i in sim.response_instructions)
