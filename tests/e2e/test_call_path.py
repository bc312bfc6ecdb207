"""A Twilio call bridged live to the OpenAI Realtime simulator, over real sockets."""

from __future__ import annotations

import asyncio
import json

from agentplatform.audio.frames import silence, tone
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, ToolRule
from agentplatform.testing.twilio_caller import TwilioCaller, TwimlAnswer

from tests.limits.conftest import redis_available  # noqa: F401  (fixture)

from .conftest import AGENT_NUMBER, closed_call_record

SPEECH = tone(440, 1200, 8000, amplitude=0.4)


async def closed_call(platform, server):
    return await closed_call_record(server, platform.engine())


async def test_caller_hears_greeting_then_an_answer_and_the_call_is_recorded(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800,
                                    caller_texts=["Do you have a slot on Monday?"]) as sim:
        platform = new_platform(sim)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                greeting_ms = caller.played_ms
                await caller.say(SPEECH)
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                assert caller.played_ms > greeting_ms + 500
                assert not caller.protocol_errors
            await asyncio.sleep(0.3)
            detail = await closed_call(platform, server)
    assert detail.end_reason == "caller_hung_up"
    roles = [t.role for t in detail.turns]
    assert roles[:3] == ["assistant", "user", "assistant"], roles
    assert detail.turns[1].text == "Do you have a slot on Monday?"
    assert detail.turns[2].latency_ms is not None
    assert detail.output_audio_tokens > 0 and detail.cost_usd > 0
    # The greeting was asked for with the agent's words, and the prompt was rendered.
    assert any("Thanks for calling the clinic" in (i or "") for i in sim.response_instructions)
    # From is the caller simulator's default number, rendered into the prompt.
    assert sim.sessions[0]["instructions"].endswith("The caller is +15555550100.")


async def test_barge_in_clears_playback_and_truncates_to_what_the_caller_heard(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=4000) as sim:
        platform = new_platform(sim)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                before = caller.played_ms
                await asyncio.sleep(1.0)  # the caller hears about a second of the greeting
                await caller.say(SPEECH)  # ...and talks over it
                assert caller.clears, "the bridge never sent clear"
                # Playback stopped at the clear; the answer to the caller comes only after
                # the caller's silence, so this is what was heard of the greeting.
                heard_ms = caller.played_ms - before
            await asyncio.sleep(0.2)
            detail = await closed_call(platform, server)
    assert sim.truncates, "no conversation.item.truncate reached the model"
    item_id, audio_end_ms = sim.truncates[0]
    greeting_item = sim.connections[0].item_audio_ms
    # Never more than was sent of that item, and close to what actually played.
    assert audio_end_ms <= greeting_item[item_id]
    # Within ~100 ms of what the caller heard (mark granularity plus scheduling).
    assert abs(audio_end_ms - heard_ms) <= 100, (audio_end_ms, heard_ms)
    assert 700 <= audio_end_ms <= 1700, audio_end_ms
    assert not [e for e in sim.connections[0].sent if e["type"] == "error"]
    barge = [e for e in detail.events if e.kind == "barge_in"]
    assert barge and barge[0].detail["heard_ms"] == audio_end_ms
    greeting = detail.turns[0]
    assert greeting.role == "assistant" and greeting.interrupted


class _ToolServer:
    """A tiny HTTP endpoint standing in for the agent's webhook tool."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.bodies.append(await reader.readexactly(length))
        body = b'{"slots": ["09:30", "14:00"]}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> _ToolServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def test_webhook_tool_result_reaches_the_model_and_end_call_hangs_up_after_goodbye(
    new_platform,
):
    rules = [ToolRule(contains="slot", name="check_availability", arguments='{"day": "Monday"}'),
             ToolRule(contains="bye", name="end_call", arguments="{}")]
    async with _ToolServer() as tool, OpenAIRealtimeServer(
        pace=1.0, reply_ms=600, tool_rules=rules,
        caller_texts=["Any slot on Monday?", "Great, bye!"],
    ) as sim:
        platform = new_platform(sim, tool_url=f"http://127.0.0.1:{tool.port}/slots")
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await caller.say(SPEECH)
                await caller.wait_for_audio(8)
                await caller.wait_for_silence(300, 10)
                played_before_goodbye = caller.played_ms
                await caller.say(SPEECH)
                await caller.wait_closed(15)
                goodbye_ms = caller.played_ms - played_before_goodbye
            detail = await closed_call(platform, server)
    assert [json.loads(b) for b in tool.bodies] == [{"day": "Monday"}]
    outputs = [e for e in sim.received if e["type"] == "conversation.item.create"
               and e["item"]["type"] == "function_call_output"]
    assert any("09:30" in e["item"]["output"] for e in outputs)
    # The goodbye was played in full before the hang-up.
    assert goodbye_ms >= 550, goodbye_ms
    assert detail.end_reason == "agent_ended"
    assert [t.name for t in detail.tools] == ["check_availability", "end_call"]
    assert all(t.ok for t in detail.tools)


async def test_model_drop_mid_call_reconnects_and_keeps_the_transcript(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=500,
                                    caller_texts=["first question", "second question"]) as sim:
        platform = new_platform(sim)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await caller.say(SPEECH)
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await sim.drop()
                await asyncio.sleep(0.5)
                await caller.say(SPEECH)
                await caller.wait_for_audio(8)
                await caller.wait_for_silence(300, 10)
            detail = await closed_call(platform, server)
    assert len(sim.connections) == 2
    replayed = [e["item"] for e in sim.connections[1].received
                if e["type"] == "conversation.item.create"]
    assert any("first question" in str(item) for item in replayed)
    assert any(e.kind == "reconnected" for e in detail.events)
    texts = [t.text for t in detail.turns if t.role == "user"]
    assert texts == ["first question", "second question"]
    assert detail.end_reason == "caller_hung_up"


async def test_model_unreachable_at_call_start_ends_call_cleanly_with_provider_error(new_platform):
    async with OpenAIRealtimeServer() as sim:
        sim.refuse_key = True
        platform = new_platform(sim)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_closed(10)
            detail = await closed_call(platform, server)
    assert detail.end_reason == "provider_error"
    assert any(e.kind == "model_unavailable" for e in detail.events)


async def test_dtmf_digit_reaches_the_model_as_user_text(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=300) as sim:
        platform = new_platform(sim)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(200, 10)
                await caller.send_dtmf("7")
                await caller.wait_for_audio(5)
    texts = [str(e["item"]) for e in sim.received if e["type"] == "conversation.item.create"]
    assert any("pressed 7" in t for t in texts)


async def test_call_limit_says_goodbye_and_ends_with_limit_reached(new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=400) as sim:
        platform = new_platform(sim, max_call_seconds=10)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_closed(20)
            detail = await closed_call(platform, server)
    assert detail.end_reason == "limit_reached"
    assert any("time limit" in (i or "") for i in sim.response_instructions)


# ------------------------------------------------------------ single-use stream tokens


def _replayer(caller: TwilioCaller, base_url: str) -> TwilioCaller:
    """A second socket for the same call, with the parameters (token) Twilio was given."""
    replay = TwilioCaller(base_url, to=AGENT_NUMBER)
    replay.call_sid, replay.account_sid = caller.call_sid, caller.account_sid
    return replay


async def _replay(caller: TwilioCaller, base_url: str) -> int | None:
    """The same token on a socket to ``base_url``, signed for that server as Twilio
    would sign it (so only the token decides)."""
    replay = _replayer(caller, base_url)
    host = base_url.split("://", 1)[1]
    await replay._open_stream(TwimlAnswer(xml="", stream_url=f"wss://{host}/twilio/media",
                                          parameters=caller.answer.parameters))
    code = await replay.wait_closed(5)
    await replay.hang_up()
    return code


async def _records_of(server, engine, call_sid: str):
    from agentplatform.storage import queries

    await server.platform.writer.flush()
    return [c for c in queries.list_calls(engine) if c.carrier_call_id == call_sid]


async def test_a_replayed_stream_token_is_closed_1008_without_a_model_session_or_record(
        new_platform):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=400) as sim:
        platform = new_platform(sim)
        async with platform.server() as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                assert await _replay(caller, server.base_url) == 1008  # while it runs
            assert await _replay(caller, server.base_url) == 1008  # and after it ended
            await closed_call(platform, server)
            assert len(await _records_of(server, platform.engine(), caller.call_sid)) == 1
    assert len(sim.sessions) == 1


async def _shared_claims(new_platform, **settings) -> None:
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=400) as sim:
        platform = new_platform(sim)
        async with platform.server(**settings) as first, platform.server(**settings) as second:
            async with TwilioCaller(first.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
            assert await _replay(caller, second.base_url) == 1008
            await closed_call(platform, first)
            assert len(await _records_of(first, platform.engine(), caller.call_sid)) == 1
    assert len(sim.sessions) == 1


async def test_a_token_used_on_one_server_is_refused_by_another_on_the_same_database(
        new_platform):
    await _shared_claims(new_platform)


async def test_a_token_used_on_one_server_is_refused_by_another_on_the_same_redis(
        new_platform, redis_available):
    await _shared_claims(new_platform, redis_url="redis://127.0.0.1:6379/0")
