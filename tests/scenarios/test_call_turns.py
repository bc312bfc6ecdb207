"""Call mode plays every kind of turn on the line: a WAV, keypad tones, a pause.
The record shows what the server heard (the WAV's words, the digits as events)."""

from __future__ import annotations

import pytest

from agentplatform.audio.wav import write_wav
from agentplatform.scenarios.runner import RunOptions, run_scenario
from agentplatform.scenarios.spec import load_scenario
from agentplatform.testing.speech_fixtures import spoken

SCENARIO = """\
name: line-turns
agent: front-desk
turns:
  - audio: parking.wav
    expect:
      - says: {contains: free parking}
  - dtmf: "1"
    expect:
      - says: {contains: "What would you like?"}   # keys are no answer to the rules
  - silence_ms: 300
  - say: "Goodbye now."
    expect:
      - tool_called: end_call
expect:
  - ended_by: agent
"""


@pytest.mark.timeout(300)
async def test_audio_dtmf_and_silence_turns_reach_the_agent(write, settings, tmp_path) -> None:
    write_wav(tmp_path / "parking.wav", spoken("Where do I park?", 16000), 16000)
    scenario = load_scenario(write(SCENARIO))
    text = await run_scenario(scenario, RunOptions(via="text"), settings=settings)
    why = "turns[0] is audio: it needs a phone line (--via call)"
    assert (text.status, text.message) == ("skipped", why)
    call = await run_scenario(scenario, RunOptions(via="call"), settings=settings)
    assert call.status == "passed", (call.message, call.failures, call.transcript)
    heard = [text for role, text in call.transcript if role == "user"]
    assert heard[0].startswith("Where do I park?"), call.transcript
