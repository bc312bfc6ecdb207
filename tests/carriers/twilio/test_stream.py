"""TwilioCallAudio over a real loopback WebSocket: start, token, events, sends, control."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agentplatform.carriers.base import CarrierEvent, Dtmf, InboundAudio, MarkPlayed, StreamStopped
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.errors import CarrierError
from agentplatform.testing import twilio_wire as twilio

SID = "MZ" + "a" * 32
CALL = "CA" + "b" * 32
TOKENS = StreamTokens(b"test-secret")

Scenario = Callable[[TwilioCallAudio], Awaitable[None]]


class FakeControl:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, ...]] = []

    async def hang_up(self, call_sid: str, say: str | None = None) -> None:
        self.calls.append(("hang_up", call_sid))
        if self.fail:
            raise CarrierError("nope")

    async def transfer(self, call_sid: str, number: str) -> None:
        self.calls.append(("transfer", call_sid, number))
        if self.fail:
            raise CarrierError("nope")


@dataclass
class Harness:
    """What the server side saw."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    start_error: Exception | None = None
    call: TwilioCallAudio | None = None


def make_app(harness: Harness, scenario: Scenario, control: FakeControl | None = None) -> FastAPI:
    app = FastAPI()

    @app.websocket("/media")
    async def media(websocket: WebSocket) -> None:
        call = TwilioCallAudio(websocket, tokens=TOKENS, control=control, start_timeout=5)  # type: ignore[arg-type]
        harness.call = call
        try:
            await call.accept_and_start()
        except CarrierError as exc:
            harness.start_error = exc
            harness.done.set()
            return
        harness.started.set()
        try:
            await scenario(call)
        finally:
            await call.close()
            harness.done.set()

    return app


async def collect(call: TwilioCallAudio, into: list[CarrierEvent]) -> None:
    async for event in call.events():
        into.append(event)


async def open_stream(base_url: str, parameters: dict[str, str]) -> ClientConnection:
    ws = await connect(base_url.replace("http", "ws") + "/media")
    await ws.send(twilio.encode(twilio.connected()))
    await ws.send(twilio.encode(twilio.start(stream_sid=SID, account_sid="AC1", call_sid=CALL,
                                             custom_parameters=parameters)))
    return ws


def good_parameters() -> dict[str, str]:
    return {"agent": "front", "token": TOKENS.mint(CALL, "front", 60), "from": "+1555000", "to": "+1555999"}


def media(seq: int, ulaw: bytes, stream_sid: str = SID) -> str:
    return twilio.encode(twilio.media(stream_sid=stream_sid, sequence_number=seq, chunk=seq,
                                      timestamp=seq * 20, payload=ulaw))


@pytest.fixture
async def running(serve) -> AsyncIterator[Callable[..., AsyncIterator[tuple[str, Harness]]]]:
    """``async with running(scenario) as (base_url, harness)``."""

    @contextlib.asynccontextmanager
    async def run(
        scenario: Scenario, control: FakeControl | None = None, harness: Harness | None = None,
    ) -> AsyncIterator[tuple[str, Harness]]:
        harness = harness or Harness()
        async with serve(make_app(harness, scenario, control)) as base_url:
            yield base_url, harness

    yield run


async def test_start_builds_call_info_from_parameters_and_token(running) -> None:
    async def scenario(call: TwilioCallAudio) -> None:
        await collect(call, [])

    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await asyncio.wait_for(harness.started.wait(), 5)
        info = harness.call.info
        assert (info.call_id, info.stream_id, info.agent) == (CALL, SID, "front")
        assert (info.from_number, info.to_number) == ("+1555000", "+1555999")
        assert "token" not in info.parameters
        await ws.close()
        await asyncio.wait_for(harness.done.wait(), 5)


@pytest.mark.parametrize("parameters", [
    {"agent": "front"},
    {"agent": "front", "token": "garbage"},
    {"agent": "front", "token": TOKENS.mint("CA-other", "front", 60)},
    {"agent": "front", "token": StreamTokens(b"wrong").mint(CALL, "front", 60)},
])
async def test_a_missing_or_bad_token_closes_1008_before_the_call_starts(running, parameters) -> None:
    scenario_ran = False

    async def scenario(call: TwilioCallAudio) -> None:
        nonlocal scenario_ran
        scenario_ran = True

    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, parameters)
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1008
        await asyncio.wait_for(harness.done.wait(), 5)
        assert not scenario_ran
        assert harness.start_error is not None


async def test_malformed_frames_are_counted_and_skipped_and_the_call_goes_on(running) -> None:
    events: list[CarrierEvent] = []

    async def scenario(call: TwilioCallAudio) -> None:
        await collect(call, events)

    first, second = bytes([1]) * 160, bytes([2]) * 160
    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await ws.send("{this is not json")
        await ws.send(media(2, first))
        await ws.send('{"event":"media","streamSid":"%s","media":{"timestamp":"60","payload":"###"}}' % SID)
        await ws.send('{"event":"transmogrify","streamSid":"%s"}' % SID)
        await ws.send(media(4, bytes([9]) * 160, stream_sid="MZ-somebody-else"))
        await ws.send(b"\x00\x01")
        await ws.send(twilio.encode(twilio.dtmf(stream_sid=SID, sequence_number=5, digit="7")))
        await ws.send(twilio.encode(twilio.mark(stream_sid=SID, sequence_number=6, name="m1")))
        await ws.send(media(7, second))
        await ws.send(twilio.encode(twilio.stop(stream_sid=SID, sequence_number=8, account_sid="AC1", call_sid=CALL)))
        await asyncio.wait_for(harness.done.wait(), 5)
        await ws.close()

    audio = [e for e in events if isinstance(e, InboundAudio)]
    assert [a.audio for a in audio] == [first, second]
    assert [a.timestamp_ms for a in audio] == [40, 140]
    assert all(a.received_at > 0 for a in audio)
    assert [type(e) for e in events] == [InboundAudio, Dtmf, MarkPlayed, InboundAudio, StreamStopped]
    assert events[1] == Dtmf("7") and events[2] == MarkPlayed("m1")
    call = harness.call
    assert call.malformed_count == 5
    assert dict(call.malformed_counts) == {"bad_json": 1, "bad_payload": 1, "unknown_event": 1,
                                           "wrong_stream": 1, "binary": 1}


async def test_the_socket_closing_ends_events_with_stream_stopped(running) -> None:
    events: list[CarrierEvent] = []

    async def scenario(call: TwilioCallAudio) -> None:
        await collect(call, events)

    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await ws.send(media(2, bytes(160)))
        await ws.close()
        await asyncio.wait_for(harness.done.wait(), 5)
    assert [type(e) for e in events] == [InboundAudio, StreamStopped]


async def test_sends_arrive_as_twilio_frames_and_never_raise_after_close(running) -> None:
    sent_after_close = asyncio.Event()

    async def scenario(call: TwilioCallAudio) -> None:
        await call.send_audio(b"\x10" * 160)
        await call.send_mark("item:20")
        await call.clear()
        async for _ in call.events():
            pass
        await call.send_audio(b"\x10" * 160)  # the peer is gone: logged, not raised
        await call.send_mark("late")
        sent_after_close.set()

    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]
        await ws.close()
        await asyncio.wait_for(sent_after_close.wait(), 5)
        await asyncio.wait_for(harness.done.wait(), 5)

    assert frames == [
        {"event": "media", "streamSid": SID, "media": {"payload": base64.b64encode(b"\x10" * 160).decode()}},
        {"event": "mark", "streamSid": SID, "mark": {"name": "item:20"}},
        {"event": "clear", "streamSid": SID},
    ]


async def test_audio_with_its_mark_arrives_as_two_frames_and_never_raises_after_close(running) -> None:
    sent_after_close = asyncio.Event()

    async def scenario(call: TwilioCallAudio) -> None:
        await call.send_audio_marked(b"\x10" * 160, "0:item:20")
        await call.send_audio_marked(b"\x11" * 160, "0:item:40")
        async for _ in call.events():
            pass
        await call.send_audio_marked(b"\x10" * 160, "late")  # the peer is gone: not raised
        sent_after_close.set()

    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
        await ws.close()
        await asyncio.wait_for(sent_after_close.wait(), 5)
        await asyncio.wait_for(harness.done.wait(), 5)

    payload = [base64.b64encode(bytes([b]) * 160).decode() for b in (0x10, 0x11)]
    assert frames == [
        {"event": "media", "streamSid": SID, "media": {"payload": payload[0]}},
        {"event": "mark", "streamSid": SID, "mark": {"name": "0:item:20"}},
        {"event": "media", "streamSid": SID, "media": {"payload": payload[1]}},
        {"event": "mark", "streamSid": SID, "mark": {"name": "0:item:40"}},
    ]


async def test_media_repeated_out_of_order_or_of_another_track_never_reaches_the_bridge(running) -> None:
    events: list[CarrierEvent] = []

    async def scenario(call: TwilioCallAudio) -> None:
        await collect(call, events)

    first, second = bytes([1]) * 160, bytes([2]) * 160
    outbound = twilio.media(stream_sid=SID, sequence_number=4, chunk=4, timestamp=80,
                            payload=bytes([3]) * 160, track="outbound")
    async with running(scenario) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await ws.send(media(2, first))
        await ws.send(media(2, first))  # a repeat
        await ws.send(media(1, first))  # a replay of an older one
        await ws.send(twilio.encode(outbound))  # numbered, in order, but not the caller's
        await ws.send(media(5, second))
        await ws.close()
        await asyncio.wait_for(harness.done.wait(), 5)

    assert [e.audio for e in events if isinstance(e, InboundAudio)] == [first, second]
    assert dict(harness.call.malformed_counts) == {"out_of_order": 2}
    assert harness.call._last_seq == 5


async def test_hang_up_without_credentials_closes_the_stream(running) -> None:
    shared = Harness()

    async def scenario(call: TwilioCallAudio) -> None:
        await call.hang_up()
        await shared.release.wait()  # so the scenario's own close is not what the client sees

    async with running(scenario, harness=shared) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1000
        harness.release.set()
        await asyncio.wait_for(harness.done.wait(), 5)


async def test_hang_up_uses_rest_then_closes(running) -> None:
    control = FakeControl()

    shared = Harness()

    async def scenario(call: TwilioCallAudio) -> None:
        await call.hang_up()
        await shared.release.wait()

    async with running(scenario, control, shared) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await asyncio.wait_for(ws.wait_closed(), 5)
        harness.release.set()
        await asyncio.wait_for(harness.done.wait(), 5)
    assert control.calls == [("hang_up", CALL)]


async def test_transfer_uses_rest_and_leaves_the_stream_to_twilio(running) -> None:
    control = FakeControl()
    transferred = asyncio.Event()

    async def scenario(call: TwilioCallAudio) -> None:
        await call.transfer("+15550123")
        transferred.set()
        async for _ in call.events():
            pass

    async with running(scenario, control) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        await asyncio.wait_for(transferred.wait(), 5)
        await ws.send(media(2, bytes(160)))  # still open: Twilio ends it with stop
        await ws.send(twilio.encode(twilio.stop(stream_sid=SID, sequence_number=3, account_sid="AC1", call_sid=CALL)))
        await asyncio.wait_for(harness.done.wait(), 5)
        await ws.close()
    assert control.calls == [("transfer", CALL, "+15550123")]


@pytest.mark.parametrize("control", [None, FakeControl(fail=True)])
async def test_a_transfer_that_cannot_happen_raises_and_keeps_the_stream(running, control) -> None:
    shared = Harness()
    refused: list[str] = []

    async def scenario(call: TwilioCallAudio) -> None:
        with pytest.raises(CarrierError) as exc:
            await call.transfer("+15550123")
        refused.append(str(exc.value))
        await call.send_audio(bytes(160))  # the caller is still with us
        await shared.release.wait()

    async with running(scenario, control, shared) as (base_url, harness):
        ws = await open_stream(base_url, good_parameters())
        try:
            sent = twilio.read_server_frame(await asyncio.wait_for(ws.recv(), 5))
        finally:
            harness.release.set()
        assert isinstance(sent, twilio.ServerMedia) and refused
        await ws.close()
        await asyncio.wait_for(harness.done.wait(), 5)
