"""The simulated caller's bad line: noise at the level asked, the fraction of frames
lost, frames late by at most the jitter asked, and the same line for the same seed."""

from __future__ import annotations

import audioop
import math

import pytest

from agentplatform.testing.line_impairments import ULAW_SILENCE, LineImpairments

FRAME = bytes([ULAW_SILENCE]) * 160


def test_noise_is_mixed_in_at_the_level_asked() -> None:
    line = LineImpairments(noise_db=-30)
    pcm = b"".join(audioop.ulaw2lin(line.frame(FRAME), 2) for _ in range(200))
    rms = audioop.rms(pcm, 2)
    level = 20 * math.log10(rms / (32767 / math.sqrt(2)))
    assert -31.5 < level < -28.5


def test_a_fraction_of_frames_is_lost_as_silence() -> None:
    line = LineImpairments(loss=0.2)
    loud = audioop.lin2ulaw(b"\x00\x40" * 160, 2)
    lost = sum(line.frame(loud) == FRAME for _ in range(2000))
    assert 340 < lost < 460


def test_jitter_delays_each_frame_by_at_most_its_bound() -> None:
    line = LineImpairments(jitter_ms=40)
    delays = [line.delay_s() for _ in range(500)]
    assert max(delays) <= 0.040 and min(delays) >= 0.0
    assert max(delays) > 0.030  # it does spread


def test_the_same_seed_gives_the_same_line() -> None:
    a, b = LineImpairments(noise_db=-40, loss=0.1, seed=3), LineImpairments(noise_db=-40,
                                                                            loss=0.1, seed=3)
    assert [a.frame(FRAME) for _ in range(50)] == [b.frame(FRAME) for _ in range(50)]


def test_a_clean_line_is_inactive_and_passes_frames_through() -> None:
    line = LineImpairments()
    assert not line.active and line.frame(FRAME) is FRAME and line.delay_s() == 0.0


@pytest.mark.parametrize("kwargs", [{"loss": 1.0}, {"loss": -0.1}, {"jitter_ms": -1},
                                    {"noise_db": 3}])
def test_impossible_lines_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        LineImpairments(**kwargs)


async def test_the_twilio_callers_frames_carry_the_impairments_over_the_socket() -> None:
    """A Media Streams peer on loopback receives the impaired line: lost frames arrive as
    silence in the 20 ms cadence, with their sequence and timestamps unbroken."""
    import base64
    import json

    from websockets.asyncio.server import serve

    from agentplatform.testing.twilio_caller import TwilioCaller, parse_twiml

    frames: list[dict] = []

    async def handler(ws) -> None:
        async for message in ws:
            event = json.loads(message)
            if event.get("event") == "media":
                frames.append(event)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        caller = TwilioCaller(f"http://127.0.0.1:{port}", to="+15555550100", auth_token="",
                              line=LineImpairments(loss=0.5, jitter_ms=5, seed=11))
        answer = parse_twiml(f'<Response><Connect><Stream url="ws://127.0.0.1:{port}/s"/>'
                             "</Connect></Response>")
        await caller.stream(answer)
        await caller.say(b"\x00\x40" * 8000)  # one second of a loud, steady line
        await caller.hang_up()
    payloads = [base64.b64decode(f["media"]["payload"]) for f in frames]
    loud = [p for p in payloads if p != FRAME]
    assert 15 <= len(loud) <= 35, len(loud)  # about half of the 50 speech frames got through
    chunks = [int(f["media"]["chunk"]) for f in frames]
    assert chunks == list(range(1, len(frames) + 1))
