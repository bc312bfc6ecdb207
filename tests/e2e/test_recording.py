"""Recorded calls over real sockets: a Twilio call bridged to the OpenAI Realtime
simulator, and the stereo WAV it leaves — the caller's track is exactly what the
simulated caller said, the agent's is what it heard, on the same timeline."""

from __future__ import annotations

import asyncio
import audioop
import wave

import httpx
import numpy as np

from agentplatform.audio.frames import noise
from agentplatform.bridge.call import IDLE_GOODBYE, IDLE_PROMPT
from agentplatform.recording.announce import render_locally
from agentplatform.storage import queries
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import TwilioCaller

from .conftest import AGENT_NUMBER, Platform, closed_call_record

MS = 8
# White noise: it correlates with itself at one lag only.
SPEECH = noise(900, 8000, level_dbfs=-12.0, seed=3)

AGENT_YAML = """\
name: front-desk
model: openai/gpt-realtime
voice: marin
prompt: You answer the phone for a clinic.
greeting: Thanks for calling the clinic, how can I help?
phone_numbers: ["+15555550100"]
recording:
  enabled: true
{extra}
"""


def _platform(tmp_path, sim, extra: str = "") -> Platform:
    agents = tmp_path / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "front-desk.yaml").write_text(AGENT_YAML.format(extra=extra))
    return Platform(tmp_path, sim)


def _read_stereo(path) -> tuple[bytes, bytes]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = wav.readframes(wav.getnframes())
    return audioop.tomono(frames, 2, 1, 0), audioop.tomono(frames, 2, 0, 1)


def _envelope(pcm: bytes) -> np.ndarray:
    """Loudness per ms (mean magnitude over 4 ms): where there is speech, not its phase."""
    x = np.abs(np.frombuffer(pcm, "<i2").astype(np.float64))
    x = np.convolve(x, np.ones(4 * MS) / (4 * MS), mode="same")
    return x[:: MS]


def lag_ms(recorded: bytes, heard: bytes, window_ms: int = 150) -> tuple[int, float]:
    """The shift of ``recorded`` against ``heard`` (PCM16 8 kHz) that lines their
    loudness up best, in ms (positive: the recording is late), and the normalised
    cross-correlation there (1 = the same shape)."""
    a, b = _envelope(recorded), _envelope(heard)
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    best, best_lag = -2.0, 0
    for lag in range(-window_ms, window_ms + 1):
        x, y = (a[lag:], b[:n - lag]) if lag >= 0 else (a[:n + lag], b[-lag:])
        score = float(np.dot(x, y)) / (float(np.sqrt(np.dot(x, x) * np.dot(y, y))) or 1.0)
        if score > best:
            best, best_lag = score, lag
    return best_lag, best


async def _recording_of(server, platform, detail) -> tuple[bytes, bytes, bytes]:
    """The recording's two tracks, and the file as the API serves it."""
    path = platform.tmp_path / "rec" / f"{detail.id}.wav"
    async with asyncio.timeout(5):
        while not any(e.kind == "recording" for e in detail.events):
            await asyncio.sleep(0.05)
            await server.platform.writer.flush()
            detail = await asyncio.to_thread(queries.get_call, platform.engine(), detail.id)
    left, right = _read_stereo(path)
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        served = await client.get(f"/api/calls/{detail.id}/recording")
        page = await client.get(f"/calls/{detail.id}")
    assert served.status_code == 200 and served.headers["content-type"] == "audio/wav"
    assert served.content == path.read_bytes()
    assert page.status_code == 200
    assert f'src="/api/calls/{detail.id}/recording"' in page.text
    assert 'class="seek"' in page.text
    return left, right, served.content


async def test_a_recorded_call_has_the_caller_left_and_what_the_caller_heard_right(tmp_path):
    async with OpenAIRealtimeServer(pace=2.0, reply_ms=1200,
                                    caller_texts=["Do you have a slot on Monday?"]) as sim:
        platform = _platform(tmp_path, sim)
        async with platform.server(recordings_dir=tmp_path / "rec") as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await caller.say(SPEECH)
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                heard = caller.heard_pcm()
            detail = await closed_call_record(server, platform.engine())
            left, right, _ = await _recording_of(server, platform, detail)
    # The caller's track is what it said, to the byte, at a frame boundary; silence elsewhere.
    said = audioop.lin2ulaw(SPEECH, 2)
    left_ulaw = audioop.lin2ulaw(left, 2)
    at = left_ulaw.find(said)
    assert at >= 0 and at % 160 == 0, at
    assert set(left_ulaw[:at] + left_ulaw[at + len(said):]) == {0xFF}
    # The agent's track is what the caller heard, where it heard it.
    lag, similarity = lag_ms(right, heard)
    print(f"agent track vs heard: lag {lag:+d} ms, correlation {similarity:.3f}")
    assert abs(lag) <= 20, lag
    assert similarity > 0.8, similarity
    # Each transcript line knows where it starts in the recording.
    [event] = [e for e in detail.events if e.kind == "recording"]
    offsets = event.detail["turn_offsets_ms"]
    roles = [t.role for t in detail.turns]
    assert roles[:3] == ["assistant", "user", "assistant"] and len(offsets) == len(roles)
    assert offsets[0] < offsets[1] < offsets[2]
    assert abs(offsets[1] - at / MS) <= 700  # the caller's line starts near their speech


async def test_a_barge_in_cuts_the_agents_track_where_the_caller_stopped_hearing_it(tmp_path):
    async with OpenAIRealtimeServer(pace=2.0, reply_ms=4000) as sim:
        platform = _platform(tmp_path, sim)
        async with platform.server(recordings_dir=tmp_path / "rec") as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await asyncio.sleep(1.0)
                await caller.say(SPEECH)  # over the greeting
                assert caller.clears
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                heard = caller.heard_pcm()
            detail = await closed_call_record(server, platform.engine())
            left, right, _ = await _recording_of(server, platform, detail)
    lag, similarity = lag_ms(right, heard)
    print(f"barge-in call: lag {lag:+d} ms, correlation {similarity:.3f}")
    assert abs(lag) <= 20 and similarity > 0.8, (lag, similarity)
    # The greeting in the recording is as long as the bridge says the caller heard of it
    # (the answer only starts after the caller's speech has ended).
    heard_greeting = [e for e in detail.events if e.kind == "barge_in"][0].detail["heard_ms"]
    speech_end = audioop.lin2ulaw(left, 2).find(audioop.lin2ulaw(SPEECH, 2)) + len(SPEECH) // 2
    voiced = _voiced_ms(right[: speech_end * 2])
    assert abs(voiced - heard_greeting) <= 40 and heard_greeting < 3000, (voiced, heard_greeting)


def _voiced_ms(pcm: bytes) -> int:
    """How many 10 ms stretches of ``pcm`` are not silent, in ms."""
    step = 10 * MS * 2
    stretches = (pcm[i:i + step] for i in range(0, len(pcm) - step + 1, step))
    return sum(10 for stretch in stretches if audioop.rms(stretch, 2) > 50)


async def test_the_announcement_is_heard_first_and_recorded(tmp_path):
    text = "This call may be recorded."
    announcement = await render_locally(text)
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800) as sim:
        platform = _platform(tmp_path, sim, extra=f"  announce: {text}")
        async with platform.server(recordings_dir=tmp_path / "rec") as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(15)
                await asyncio.sleep(len(announcement) / 8000 + 1.0)  # the pause, the greeting
                await caller.wait_for_silence(300, 10)
                heard = caller.heard_ulaw()
                heard_pcm = caller.heard_pcm()
            detail = await closed_call_record(server, platform.engine())
            _, right, _ = await _recording_of(server, platform, detail)
    start = heard.find(announcement)
    assert start >= 0, "the caller did not hear the announcement"
    # Nothing before it, and the greeting only after it.
    assert set(heard[:start]) == {0xFF}
    assert set(heard[start + len(announcement): start + len(announcement) + 200 * MS]) == {0xFF}
    assert len(heard) > start + len(announcement) + 500 * MS  # the greeting came after
    assert audioop.lin2ulaw(right, 2).find(announcement) >= 0
    lag, _ = lag_ms(right, heard_pcm)
    assert abs(lag) <= 20, lag


async def test_a_silent_caller_is_prompted_then_the_call_ends_as_idle_timeout(tmp_path):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600) as sim:
        limits = "limits:\n  idle_prompt_seconds: 2\n  idle_prompts_max: 1"
        platform = _platform(tmp_path, sim, extra=limits)
        async with platform.server(recordings_dir=tmp_path / "rec") as server:
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                closed = await caller.wait_closed(20)  # the caller never says a word
            assert closed is not None
            detail = await closed_call_record(server, platform.engine())
    assert detail.end_reason == "idle_timeout"
    asked = [i for i in sim.response_instructions if i in (IDLE_PROMPT, IDLE_GOODBYE)]
    assert asked == [IDLE_PROMPT, IDLE_GOODBYE]
    assert [e.detail["count"] for e in detail.events if e.kind == "idle_prompt"] == [1]
    # Greeting, the prompt, the goodbye: all heard, in that order.
    assert [t.role for t in detail.turns] == ["assistant", "assistant", "assistant"]


def _heard_on_the_callers_clock(caller) -> bytes:
    """What the SIP caller received, each packet where it arrived on the clock its own
    RTP is stamped with (its send loop starts as the call is confirmed)."""
    [t0] = [e.at for e in caller.events if e.kind == "state" and e.detail == "confirmed"]
    timeline = bytearray()
    for received in caller.received:
        if received.packet.payload_type != 0:
            continue
        pcm = audioop.ulaw2lin(received.packet.payload, 2)
        at = max(0, round((received.at - t0) * 8000)) * 2
        if len(timeline) < at:
            timeline += bytes(at - len(timeline))
        timeline[at:at + len(pcm)] = pcm
    return bytes(timeline)


async def test_a_recorded_sip_call_lines_up_with_what_the_sip_caller_heard(tmp_path):
    from agentplatform.testing.sip_caller import SipCaller

    from .test_sip_call import _sip_settings

    async with OpenAIRealtimeServer(pace=2.0, reply_ms=1200, caller_texts=["Monday?"]) as sim:
        platform = _platform(tmp_path, sim)
        sip = _sip_settings()
        async with platform.server(recordings_dir=tmp_path / "rec", **sip) as server:
            async with SipCaller(sip["sip_listen"], to=AGENT_NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                greeting = len(caller.heard_pcm())
                await caller.say(SPEECH)
                await caller.wait_for_audio(5, since=greeting)
                await caller.wait_for_silence(300, 10)
            await asyncio.sleep(0.3)
            detail = await closed_call_record(server, platform.engine())
            left, right, _ = await _recording_of(server, platform, detail)
    said = audioop.lin2ulaw(SPEECH, 2)
    at = audioop.lin2ulaw(left, 2).find(said)
    assert at >= 0 and at % 160 == 0, at
    lag, similarity = lag_ms(right, _heard_on_the_callers_clock(caller))
    print(f"SIP call: lag {lag:+d} ms, correlation {similarity:.3f}")
    assert abs(lag) <= 20 and similarity > 0.8, (lag, similarity)
