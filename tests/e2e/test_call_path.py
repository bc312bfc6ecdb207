"""A Twilio call bridged live to the OpenAI Realtime simulator, over real sockets."""

from __future__ import annotations

import asyncio

from agentplatform.audio.frames import silence, tone
from agentplatform.storage import queries
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import AGENT_NUMBER

SPEECH = tone(440, 1200, 8000, amplitude=0.4)


async def closed_call(platform, server, timeout=5.0):
    """The one call's record, once the writer has written it."""
    await server.platform.writer.flush()
    calls = queries.list_calls(platform.engine())
    assert len(calls) == 1
    return queries.get_call(platform.engine(), calls[0].id)


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
