"""The Twilio caller simulator against small apps behind the real Twilio routes."""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import io
import wave
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from agentplatform.carriers.base import CarrierEvent, Dtmf, InboundAudio, MarkPlayed, StreamStopped
from agentplatform.carriers.twilio.routes import UNKNOWN_NUMBER_MESSAGE, build_router
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.config import Settings
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller, read_wav_pcm16_8k

NUMBER = "+15550100"
SILENCE = 0xFF


def tone(ms: int, freq: float = 440.0) -> bytes:
    """PCM16 8 kHz sine."""
    t = np.arange(ms * 8) / 8000
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


def chunks(ulaw: bytes, size: int = 160) -> list[bytes]:
    return [ulaw[i:i + size] for i in range(0, len(ulaw), size)]


async def agent_for(number: str) -> str | None:
    return "tester" if number == NUMBER else None


def app_for(handle_call: Callable[[TwilioCallAudio], Awaitable[None]], **settings: str) -> FastAPI:
    app = FastAPI()
    settings.setdefault("twilio_auth_token", SIMULATED_AUTH_TOKEN)  # the caller signs with it
    app.include_router(build_router(
        settings=Settings(_env_file=None, **settings), lookup_agent=agent_for,
        handle_call=handle_call, on_call_status=lambda sid, status: None,
    ))
    return app


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_marks_come_back_when_playback_reaches_them() -> None:
    server_events: list[CarrierEvent] = []
    part = audioop.lin2ulaw(tone(300), 2)

    async def handle_call(call: TwilioCallAudio) -> None:
        for name in ("a", "b"):
            for chunk in chunks(part):
                await call.send_audio(chunk)
            await call.send_mark(name)
        async for event in call.events():
            if not isinstance(event, InboundAudio):
                server_events.append(event)
            if isinstance(event, StreamStopped) or len(server_events) == 2:
                return

    async with serve(app_for(handle_call)) as base_url:
        async with TwilioCaller(base_url, to=NUMBER, speed=2.0) as caller:
            await caller.wait_for_marks(2, timeout=5)
            await caller.wait_closed(timeout=5)

    assert [(m.name, m.played_bytes, m.cleared) for m in caller.marks_echoed] == [("a", 2400, False), ("b", 4800, False)]
    assert server_events == [MarkPlayed("a"), MarkPlayed("b")]
    assert caller.first_audio_at is not None
    assert part + part in caller.heard_ulaw()
    assert caller.protocol_errors == []


async def test_clear_drops_queued_audio_and_returns_pending_marks_at_once() -> None:
    server_events: list[CarrierEvent] = []
    long_answer = audioop.lin2ulaw(tone(2000), 2)

    async def handle_call(call: TwilioCallAudio) -> None:
        for chunk in chunks(long_answer):
            await call.send_audio(chunk)
        await call.send_mark("end")
        async for event in call.events():
            if isinstance(event, Dtmf):
                await call.clear()
            elif not isinstance(event, InboundAudio):
                server_events.append(event)
                if isinstance(event, MarkPlayed | StreamStopped):
                    break
        async for event in call.events():  # hold the call until the caller hangs up
            if isinstance(event, StreamStopped):
                return

    async with serve(app_for(handle_call)) as base_url:
        async with TwilioCaller(base_url, to=NUMBER, speed=2.0) as caller:
            await caller.wait_for_audio(timeout=5)
            await until(lambda: caller.played_ms >= 100)
            await caller.send_dtmf("1")
            [mark] = await caller.wait_for_marks(1, timeout=5)
            await until(lambda: server_events != [])
            await caller.wait_for_silence(200, timeout=5)
            played_at_clear, played_after = mark.played_bytes, caller.played_ms * 8

    assert (mark.name, mark.cleared) == ("end", True)
    assert 800 <= played_at_clear < len(long_answer)
    assert played_after == played_at_clear  # nothing queued survived the clear
    assert len(caller.clears) == 1
    assert server_events == [MarkPlayed("end")]
    heard = caller.heard_ulaw()
    assert long_answer[:played_at_clear] in heard
    assert long_answer[:played_at_clear + 160] not in heard
    assert caller.protocol_errors == []  # media, mark and clear all as Twilio documents them


async def test_a_server_frame_twilio_would_refuse_is_reported_as_a_protocol_error() -> None:
    async def handle_call(call: TwilioCallAudio) -> None:
        sid = call.info.stream_id
        await call._ws.send_text('{"event": "clear", "streamSid": "%s", "extra": 1}' % sid)
        await call._ws.send_text('{"event": "media", "streamSid": "%s", "media": {"payload": "AA=="}, '
                                 '"sequenceNumber": "1"}' % sid)
        await call._ws.send_bytes(b"\x00")
        await call._ws.send_text('{"event": "mark", "streamSid": "MZ-not-this-one", "mark": {"name": "m"}}')
        async for event in call.events():
            if isinstance(event, StreamStopped):
                return

    async with serve(app_for(handle_call)) as base_url:
        async with TwilioCaller(base_url, to=NUMBER, speed=2.0) as caller:
            await until(lambda: len(caller.protocol_errors) == 4)

    assert [e.split()[0] for e in caller.protocol_errors] == ["31951", "31951", "31950", "31951"]


async def test_caller_speech_arrives_as_paced_twilio_frames_and_can_be_echoed() -> None:
    inbound: list[InboundAudio] = []
    said = audioop.lin2ulaw(tone(200, 523.0), 2)

    async def echo(call: TwilioCallAudio) -> None:
        async for event in call.events():
            if isinstance(event, InboundAudio):
                inbound.append(event)
                await call.send_audio(event.audio)
            elif isinstance(event, StreamStopped):
                return

    async with serve(app_for(echo)) as base_url:
        async with TwilioCaller(base_url, to=NUMBER, speed=4.0) as caller:
            await until(lambda: len(inbound) >= 3)  # the line is open before anyone speaks
            await caller.say(tone(200, 523.0))
            # Playback runs at the rate the echo arrives, so jitter may put silence
            # between frames (as on a real line); each frame plays whole.
            await until(lambda: all(frame in caller.heard_ulaw() for frame in chunks(said)))

    assert inbound and all(len(frame.audio) == 160 for frame in inbound)
    stamps = [frame.timestamp_ms for frame in inbound]
    assert stamps == list(range(0, 20 * len(stamps), 20))
    assert said in b"".join(frame.audio for frame in inbound)
    silent = [frame for frame in inbound if frame.audio == bytes([SILENCE]) * 160]
    assert silent, "an idle line still sends silence frames"


async def test_hanging_up_sends_stop_and_the_server_closing_is_noticed() -> None:
    seen: list[CarrierEvent] = []

    async def wait_for_stop(call: TwilioCallAudio) -> None:
        async for event in call.events():
            if not isinstance(event, InboundAudio):
                seen.append(event)

    async def end_at_once(call: TwilioCallAudio) -> None:
        return None

    async with serve(app_for(wait_for_stop)) as base_url:
        caller = TwilioCaller(base_url, to=NUMBER)
        assert await caller.dial()
        await caller.hang_up()
        await until(lambda: seen != [])
    assert seen == [StreamStopped()]
    assert not caller.closed_by_server

    async with serve(app_for(end_at_once)) as base_url:
        caller = TwilioCaller(base_url, to=NUMBER)
        assert await caller.dial()
        assert await caller.wait_closed(timeout=5) == 1000
        await caller.hang_up()
    assert caller.closed_by_server


async def test_signed_calls_pass_and_a_wrong_auth_token_is_refused() -> None:
    handled = asyncio.Event()

    async def handle_call(call: TwilioCallAudio) -> None:
        handled.set()

    async with serve(app_for(handle_call, twilio_auth_token="real-token")) as base_url:
        impostor = TwilioCaller(base_url, to=NUMBER, auth_token="guessed")
        assert not await impostor.dial()
        assert impostor.webhook_status == 403
        caller = TwilioCaller(base_url, to=NUMBER, auth_token="real-token")
        assert await caller.dial()
        await asyncio.wait_for(handled.wait(), 5)
        await caller.wait_closed(timeout=5)
        await caller.hang_up()
    assert caller.close_code == 1000


async def test_an_unknown_number_is_said_goodbye_to_and_not_streamed() -> None:
    async def handle_call(call: TwilioCallAudio) -> None:
        raise AssertionError("no stream for an unknown number")

    async with serve(app_for(handle_call)) as base_url:
        caller = TwilioCaller(base_url, to="+19990000")
        assert not await caller.dial()
    assert caller.answer is not None
    assert (caller.answer.said, caller.answer.hangup, caller.answer.stream_url) == ([UNKNOWN_NUMBER_MESSAGE], True, "")


def test_wav_input_must_be_8k_mono_pcm16() -> None:
    def wav(rate: int, channels: int) -> bytes:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(tone(20) * channels)
        return buffer.getvalue()

    assert read_wav_pcm16_8k(wav(8000, 1)) == tone(20)
    with pytest.raises(ValueError):
        read_wav_pcm16_8k(wav(16000, 1))
    with pytest.raises(ValueError):
        read_wav_pcm16_8k(wav(8000, 2))
