"""The SIP bench's pairing of what the caller sent with what the model heard."""

from __future__ import annotations

import audioop
from types import SimpleNamespace

from agentplatform.audio.frames import tone
from agentplatform.bench_sip import ModelEar, pair_onsets


def test_each_start_of_speech_pairs_with_the_models_next_onset_and_unheard_speech_is_skipped() -> None:
    assert [round(ms, 6) for ms in pair_onsets([1.0, 3.0, 9.0], [3.004, 1.002])] == [2.0, 4.0]


def test_the_model_ear_notes_voice_onsets_per_bench_line_from_the_agents_prompt() -> None:
    ear = ModelEar()
    line = SimpleNamespace(facts=SimpleNamespace(instructions="Benchmark line 7.", in_fmt="audio/pcmu"))
    stranger = SimpleNamespace(facts=SimpleNamespace(instructions="Someone else.", in_fmt="audio/pcmu"))
    voice = audioop.lin2ulaw(tone(440, 20, 8000, amplitude=0.4), 2)
    quiet = audioop.lin2ulaw(b"\0\0" * 160, 2)
    for at, audio in [(1.0, quiet), (1.02, voice), (1.04, voice), (1.06, quiet), (2.0, voice)]:
        ear(line, audio, at)
        ear(stranger, audio, at)
    assert dict(ear.onsets) == {7: [1.02, 2.0]}


async def test_the_model_simulator_hands_each_audio_append_to_on_audio_as_it_arrives() -> None:
    import base64
    import time

    import orjson
    from websockets.asyncio.client import connect

    from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer

    heard: list[tuple[bytes, float]] = []
    async with OpenAIRealtimeServer() as sim:
        sim.on_audio = lambda connection, audio, at: heard.append((audio, at))
        before = time.monotonic()
        async with connect(sim.url, additional_headers={"Authorization": f"Bearer {sim.api_key}"}) as ws:
            await ws.recv()  # session.created
            await ws.send(orjson.dumps({"type": "input_audio_buffer.append",
                                        "audio": base64.b64encode(b"\1\2" * 80).decode()}).decode())
            await ws.send(orjson.dumps({"type": "input_audio_buffer.clear"}).decode())
            await ws.recv()  # input_audio_buffer.cleared: the append was handled before it
    assert [audio for audio, _ in heard] == [b"\1\2" * 80]
    assert before <= heard[0][1] <= time.monotonic()
