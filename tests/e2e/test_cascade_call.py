"""A phone call served by the offline cascade: real speech in, real speech out.

The caller simulator speaks sentences rendered by the local voice over the Twilio
Media Streams protocol; the server hears them with Silero VAD and Whisper tiny.en,
answers with the agent's rules, and speaks with Piper. No simulator stands in for any
engine here: every word is recognised and synthesised for real.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from agentplatform.testing.speech_fixtures import spoken
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import closed_call_record

NUMBER = "+15555550100"
AGENT = """\
name: desk
model: local/offline
voice_streaming: false
greeting: Maple Street Dental, how can I help?
phone_numbers: ["+15555550100"]
turn_detection: {silence_duration_ms: 400}
rules:
  - match: \\b(hours?|open)\\b
    reply: We are open Monday to Friday, from eight in the morning to five in the afternoon.
  - match: \\b(where|address)\\b
    reply: >-
      We are at one hundred and twenty Maple Street, right next to the public library.
      There is free parking behind the building, and the entrance is on the left side.
      Please ring the bell when you arrive and someone will let you in.
  - match: \\b(bye|goodbye)\\b
    reply: Thank you for calling. Goodbye!
    tool: {name: end_call}
fallback_reply: Sorry, I can only tell you our hours and address.
tools:
  - type: end_call
"""


def _platform(tmp_path: Path):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "desk.yaml").write_text(AGENT)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    return simulated_settings(agents_dir=agents, database_url=database_url)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


async def _answer(caller: TwilioCaller, sentence: str) -> float:
    before = caller.played_ms
    await caller.say(spoken(sentence))
    await caller.wait_for_audio(15)
    await caller.wait_for_silence(400, 30)
    return caller.played_ms - before


async def test_a_spoken_question_is_transcribed_answered_and_spoken_back(tmp_path):
    settings = _platform(tmp_path)
    async with local_server(settings) as server:
        async with TwilioCaller(server.base_url, to=NUMBER) as caller:
            await caller.wait_for_audio(20)
            await caller.wait_for_silence(400, 20)
            assert caller.played_ms > 1000  # the greeting, spoken by the local voice
            answer_ms = await _answer(caller, "What are your hours?")
            assert answer_ms > 2000
            # "Goodbye" matches the rule that says goodbye and ends the call.
            await caller.say(spoken("Thanks, goodbye."))
            await caller.wait_closed(30)
            assert not caller.protocol_errors
        detail = await closed_call_record(server, _engine(settings.database_url))
    assert detail.end_reason == "agent_ended"
    turns = [(t.role, t.text) for t in detail.turns]
    assert turns[0] == ("assistant", "Maple Street Dental, how can I help?")
    assert turns[1][0] == "user" and "hours" in _words(turns[1][1]), turns
    assert turns[2] == ("assistant", "We are open Monday to Friday, from eight in the morning "
                                     "to five in the afternoon.")
    assert turns[3][0] == "user" and "goodbye" in _words(turns[3][1]), turns
    assert turns[4] == ("assistant", "Thank you for calling. Goodbye!")
    assert [t.name for t in detail.tools] == ["end_call"]
    assert turns and detail.turns[2].latency_ms is not None
    timings = [e for e in detail.events if e.kind == "cascade_turn"]
    # Every turn reports its split; STT may show 0 ms: the transcript made during the
    # pause is ready when the turn ends.
    parts = ("vad_hangover_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms")
    details = [e.detail for e in timings]
    assert len(details) == 2, details
    assert all(min(d[p] for p in parts) >= 0 and sum(d[p] for p in parts) > 0
               for d in details), details


async def test_speaking_over_the_answer_cuts_it_to_what_was_heard(tmp_path):
    settings = _platform(tmp_path)
    async with local_server(settings) as server:
        async with TwilioCaller(server.base_url, to=NUMBER) as caller:
            await caller.wait_for_audio(20)
            await caller.wait_for_silence(400, 20)
            before = caller.played_ms
            await caller.say(spoken("Where are you?"))
            await caller.wait_for_audio(15)
            await asyncio.sleep(1.5)  # about a second and a half of the long answer
            await caller.say(spoken("Sorry, what are your hours?"))
            assert caller.clears, "the bridge never cleared the caller's playback"
            await caller.wait_for_audio(15)
            await caller.wait_for_silence(400, 30)
            assert caller.played_ms - before > 2000
        detail = await closed_call_record(server, _engine(settings.database_url))
    said = [t for t in detail.turns if t.role == "assistant"]
    address = said[1]
    assert address.interrupted
    full = ("We are at one hundred and twenty Maple Street, right next to the public library.")
    assert address.text.startswith("We are") and len(address.text) < len(full) + 60
    assert [e for e in detail.events if e.kind == "barge_in"]
    assert said[-1].text.startswith("We are open Monday to Friday")


def _engine(database_url: str):
    from agentplatform.storage.database import make_engine

    return make_engine(database_url)
