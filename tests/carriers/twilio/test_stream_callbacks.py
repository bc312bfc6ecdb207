"""Twilio frames handed to the bridge inside the media listener's socket callback
(``TwilioCallAudio.deliver_to`` over ``MediaSocket.dispatch``): the same parsing and
checks as the reading loop, each event reaching the bridge (and a frame's audio the
model) before the callback returns, in order even when a handler has to wait."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from agentplatform.agents.spec import AgentSpec
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.carriers.base import (
    CarrierEvent, Dtmf, InboundAudio, MarkPlayed, StreamStopped,
)
from agentplatform.carriers.dialing import AnsweringMachine
from agentplatform.carriers.twilio.stream import StreamState, TwilioCallAudio
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.models import OpenedModel
from agentplatform.models import open_model as open_model_for_real
from agentplatform.realtime.base import (
    Capabilities, ModelEvent, ModelSession, SessionSetup,
)
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers
from agentplatform.testing import twilio_wire as twilio

from tests.carriers.twilio.test_media_listener import (
    CALL, SID, Listening, listening, open_stream,
)

AGENT_SPEC = AgentSpec(name=fuzz_carriers.AGENT, model="openai/gpt-realtime",
                       g711_passthrough=True)


def _in_socket_callback() -> bool:
    """Whether the media socket's frame callback is on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "on_ws_frame" and code.co_filename.endswith("media_listener.py"):
            return True
        frame = frame.f_back
    return False


async def _within(waiting: Any, what: str) -> Any:
    try:
        async with asyncio.timeout(10):
            return await waiting
    except TimeoutError:
        raise AssertionError(what) from None


async def _until(condition: Callable[[], Any]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def media(seq: int, payload: bytes, *, stream_sid: str = SID, track: str = "inbound") -> str:
    return twilio.encode(twilio.media(stream_sid=stream_sid, sequence_number=seq, chunk=seq,
                                      timestamp=seq * 20, payload=payload, track=track))


def stop(seq: int) -> str:
    return twilio.encode(twilio.stop(stream_sid=SID, sequence_number=seq, account_sid="AC1",
                                     call_sid=CALL))


def chunk(n: int) -> bytes:
    return bytes([n]) * 160


# ------------------------------------------------------------ the stream, with a sink


class Sunk:
    """What a sink given to ``deliver_to`` received, and whether inside the callback."""

    def __init__(self) -> None:
        self.events: list[CarrierEvent] = []
        self.in_callback: list[bool] = []
        self.delivering: bool | None = None
        self.ended = asyncio.Event()

    def sink(self, event: CarrierEvent) -> None:
        self.events.append(event)
        self.in_callback.append(_in_socket_callback())

    def handle(self, before: Callable[[TwilioCallAudio], None] = lambda call: None):
        async def handle(call: TwilioCallAudio) -> None:
            before(call)
            self.delivering = call.deliver_to(self.sink)
            async for event in call.events():  # nothing: they went to the sink
                self.events.append(event)
            self.ended.set()
        return handle

    def audio(self) -> list[bytes]:
        return [e.audio for e in self.events if isinstance(e, InboundAudio)]


async def test_on_the_listener_frames_reach_the_sink_inside_the_sockets_callback() -> None:
    sunk = Sunk()
    app = Listening(handle=sunk.handle())
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await _within(_until(lambda: sunk.delivering is not None), "the stream never started")
        await ws.send(media(2, chunk(1)))
        await ws.send(twilio.encode(twilio.mark(stream_sid=SID, sequence_number=3, name="m1")))
        await ws.send(twilio.encode(twilio.dtmf(stream_sid=SID, sequence_number=4, digit="5")))
        await ws.send(media(5, chunk(2)))
        await ws.send(stop(6))
        await _within(sunk.ended.wait(), "the stream never ended")
        await ws.close()
    assert sunk.delivering is True
    assert sunk.events == [InboundAudio(chunk(1), 40, sunk.events[0].received_at),
                           MarkPlayed("m1"), Dtmf("5"),
                           InboundAudio(chunk(2), 100, sunk.events[3].received_at),
                           StreamStopped()]
    assert sunk.in_callback == [True, True, True, True, False]  # the stop: after the callback


async def test_on_the_listener_malformed_frames_are_counted_and_skipped_in_the_callback() -> None:
    sunk = Sunk()
    app = Listening(handle=sunk.handle())
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await ws.send("{this is not json")
        await ws.send(b"\x00\x01")
        await ws.send(media(2, chunk(1)))
        await ws.send(media(2, chunk(9)))  # a repeat
        await ws.send(media(3, chunk(9), stream_sid="MZ" + "f" * 32))  # another stream's
        await ws.send('{"event":"transmogrify","streamSid":"%s"}' % SID)
        await ws.send(media(4, chunk(9), track="outbound"))  # not the caller's audio
        await ws.send(media(5, chunk(2)))
        await ws.send(twilio.encode(twilio.stop(stream_sid="MZ" + "f" * 32, sequence_number=6,
                                                account_sid="AC1", call_sid=CALL)))
        await ws.send(media(7, chunk(3)))
        await ws.send(stop(8))
        await _within(sunk.ended.wait(), "the stream never ended")
        await ws.close()
    assert sunk.delivering is True
    assert sunk.audio() == [chunk(1), chunk(2), chunk(3)]
    assert isinstance(sunk.events[-1], StreamStopped) and len(sunk.events) == 4
    [call] = app.calls
    assert dict(call.malformed_counts) == {"bad_json": 1, "binary": 1, "unknown_event": 1,
                                           "out_of_order": 1, "wrong_stream": 2}


async def test_on_the_listener_the_socket_closing_ends_with_stream_stopped() -> None:
    sunk = Sunk()
    app = Listening(handle=sunk.handle())
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await ws.send(media(2, chunk(1)))
        await _within(_until(lambda: sunk.events), "the frame never came")
        await ws.close()
        await _within(sunk.ended.wait(), "the stream never ended")
    [call] = app.calls
    assert sunk.events[1:] == [StreamStopped()] and call.state is StreamState.CLOSED


async def test_events_delivered_from_outside_reach_the_sink_in_order_with_the_frames() -> None:
    sunk = Sunk()
    early = AnsweringMachine(verdict="human", greeting_ended=False, detail="human")
    late = AnsweringMachine(verdict="machine", greeting_ended=True, detail="machine_end_beep")
    app = Listening(handle=sunk.handle(before=lambda call: call.deliver(early)))
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await ws.send(media(2, chunk(1)))
        await _within(_until(lambda: len(sunk.events) == 2), "the frame never came")
        app.calls[0].deliver(late)  # an HTTP callback, between two frames
        await ws.send(media(3, chunk(2)))
        await ws.send(stop(4))
        await _within(sunk.ended.wait(), "the stream never ended")
        await ws.close()
    assert [type(e).__name__ for e in sunk.events] == [
        "AnsweringMachine", "InboundAudio", "AnsweringMachine", "InboundAudio", "StreamStopped"]
    assert sunk.events[0] is early and sunk.events[2] is late


async def test_on_the_main_port_the_stream_cannot_deliver_and_events_reads_as_before() -> None:
    class StarletteLike:  # the surface of Starlette's WebSocket: no ``dispatch``
        async def receive(self) -> dict[str, Any]:
            raise AssertionError("not read")

    call = TwilioCallAudio(StarletteLike(), tokens=None)  # type: ignore[arg-type]
    call.state = StreamState.STARTED
    assert call.deliver_to(lambda event: None) is False


# ------------------------------------------------------------ a whole bridge on the listener


class TakingModel(ModelSession):
    """Records the audio it is sent, and whether inside the media socket's callback; the
    send of a chosen chunk waits until released."""

    capabilities = Capabilities(input_rate=8000, output_rate=8000, g711=True, truncates=True)

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self.log: list[bytes | str] = []
        self.in_callback: list[bool] = []
        self.hold_chunk = -1
        self.release = asyncio.Event()
        self._ended = asyncio.Event()

    async def connect(self) -> None:
        return None

    def deliver_to(self, sink: Callable[[ModelEvent], None]) -> None:
        return None

    async def send_audio(self, audio: bytes) -> None:
        self.in_callback.append(_in_socket_callback())
        index = sum(1 for x in self.log if isinstance(x, bytes))
        self.log.append(audio)
        if index == self.hold_chunk:
            await self.release.wait()

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        self.log.append(text)

    async def request_response(self, instructions: str | None = None) -> None:
        return None

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        return None

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        return None

    async def cancel_response(self) -> None:
        return None

    async def events(self) -> AsyncIterator[ModelEvent]:
        await self._ended.wait()
        return
        yield

    async def close(self) -> None:
        self.log.append("closed")
        self._ended.set()

    def audio(self) -> list[bytes]:
        return [x for x in self.log if isinstance(x, bytes)]


class Bridged:
    """The listener's streams run by the real bridge against ``TakingModel``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.models: list[TakingModel] = []
        self.sessions: list[CallSession] = []
        self.ends: list[EndReason] = []
        self.hold_chunk = -1
        self.ended = asyncio.Event()

        def open_model(agent: AgentSpec, model: Any, deps: Any, **prompt: Any) -> OpenedModel:
            real = open_model_for_real(agent, model, deps, **prompt)
            self.models.append(TakingModel(real.session.setup))
            self.models[-1].hold_chunk = self.hold_chunk
            return OpenedModel(self.models[-1], real.audio_format)

        self.deps = CallDeps(settings=Settings(_env_file=None, openai_api_key="sk-test"),
                             catalog=load_catalog(), recorder=fuzz_carriers._Recorder(),
                             http=http, open_model=open_model)
        self.app = Listening(handle=self.handle)

    def delivering(self) -> bool:
        """The bridge takes the stream's events in its socket's callback by now."""
        return bool(self.sessions) and self.sessions[0].audio._sink is not None  # type: ignore[attr-defined]

    async def handle(self, call: TwilioCallAudio) -> None:
        session = CallSession(call, AGENT_SPEC, self.deps)
        self.sessions.append(session)
        self.ends.append(await session.run())
        self.ended.set()


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def test_on_the_listener_a_frames_audio_reaches_the_model_inside_the_sockets_callback(http):
    bridged = Bridged(http)
    async with listening(bridged.app):
        ws = await open_stream(bridged.app, bridged.app.signed(), bridged.app.parameters())
        await _within(_until(bridged.delivering), "the bridge never took the stream's events")
        for seq in (2, 3, 4):
            await ws.send(media(seq, chunk(seq)))
        await _within(_until(lambda: len(bridged.models[0].audio()) == 3), "the audio never came")
        await ws.send(stop(5))
        await _within(bridged.ended.wait(), "the call never ended")
        await ws.close()
    [model] = bridged.models
    assert model.audio() == [chunk(2), chunk(3), chunk(4)]
    assert model.in_callback == [True, True, True]  # no task woken in between
    assert bridged.ends == [EndReason.CALLER_HUNG_UP]


async def test_on_the_listener_frames_then_a_stop_keep_their_order_behind_a_handler_that_waits(
        http):
    bridged = Bridged(http)
    bridged.hold_chunk = 1  # the model is slow to take the second chunk
    async with listening(bridged.app):
        ws = await open_stream(bridged.app, bridged.app.signed(), bridged.app.parameters())
        await _within(_until(bridged.delivering), "the bridge never took the stream's events")
        for seq in (2, 3, 4, 5, 6):
            await ws.send(media(seq, chunk(seq)))
        await ws.send(stop(7))
        [session] = bridged.sessions
        await _within(_until(lambda: session._carrier_backlog
                             and isinstance(session._carrier_backlog[-1], StreamStopped)),
                      "the stop never queued behind the waiting audio")
        [model] = bridged.models
        assert model.audio() == [chunk(2), chunk(3)]  # the stop has not overtaken them
        assert not bridged.ended.is_set()
        model.release.set()
        await _within(bridged.ended.wait(), "the call never ended")
        await ws.close()
    assert model.log == [chunk(2), chunk(3), chunk(4), chunk(5), chunk(6), "closed"]
    assert bridged.ends == [EndReason.CALLER_HUNG_UP]


async def test_on_the_listener_the_socket_closing_ends_the_call_as_the_caller_hanging_up(http):
    bridged = Bridged(http)
    async with listening(bridged.app):
        ws = await open_stream(bridged.app, bridged.app.signed(), bridged.app.parameters())
        await _within(_until(bridged.delivering), "the bridge never took the stream's events")
        await ws.send(media(2, chunk(2)))
        await ws.send(twilio.encode(twilio.dtmf(stream_sid=SID, sequence_number=3, digit="7")))
        await _within(_until(lambda: len(bridged.models[0].log) == 2), "the frames never came")
        await ws.close()
        await _within(bridged.ended.wait(), "the call never ended")
    [model] = bridged.models
    assert model.log == [chunk(2), "(The caller pressed 7 on the keypad.)", "closed"]
    assert bridged.ends == [EndReason.CALLER_HUNG_UP]


# ------------------------------------------------------------ DTMF: the stream reopened


async def test_on_the_listener_a_stream_reopened_after_dtmf_carries_the_call_on(tmp_path,
                                                                               monkeypatch):
    """As ``tests/e2e/test_outbound_twilio.py``'s DTMF call, with the streams on the
    listener and their frames handed to the bridge in the socket's callback: Twilio
    stops the first stream to play the keys, and the same call, model session and
    record go on over the second."""
    from agentplatform.storage import queries
    from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, ToolRule
    from agentplatform.testing.stack import local_server, simulated_settings
    from agentplatform.testing.twilio_rest_server import (
        SIMULATED_ACCOUNT_SID, Callee, TwilioRestServer,
    )
    from tests.e2e import test_outbound_twilio as outbound

    delivering: list[bool] = []
    deliver_to = TwilioCallAudio.deliver_to

    def spy(self: TwilioCallAudio, sink: Callable[[CarrierEvent], None]) -> bool:
        delivering.append(deliver_to(self, sink))
        return delivering[-1]

    monkeypatch.setattr(TwilioCallAudio, "deliver_to", spy)
    rules = [ToolRule(contains="press", name="send_dtmf", arguments='{"digits": "1w2"}')]
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "reminders.yaml").write_text(outbound.DTMF_AGENT_YAML)
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600, tool_rules=rules,
                                    caller_texts=["For sales, press one then two",
                                                  "Sales, how can I help?"]) as sim, \
            TwilioRestServer(callees={outbound.CALLEE: Callee("human")}) as rest:
        settings = simulated_settings(
            agents_dir=agents, database_url=f"sqlite:///{tmp_path / 'calls.db'}",
            openai_url=sim.url, twilio_account_sid=SIMULATED_ACCOUNT_SID,
            twilio_api_base_url=rest.url, media_listen="127.0.0.1:0")
        async with local_server(settings) as server:
            server.settings.public_url = server.base_url
            [carrier] = [c for c in server.app.state.carriers if c.name == "twilio"]
            response = await outbound.dial(server, params={"name": "Ada"})
            call_id = response.json()["call_id"]
            call = await outbound.answered(rest)
            menu = call.caller
            await menu.wait_for_audio(8)
            assert len(carrier.listener.sockets) == 1  # the stream came through the listener
            await menu.wait_for_silence(300, 10)
            await menu.say(outbound.SPEECH)  # the IVR reads its menu; the agent presses keys
            async with asyncio.timeout(10):
                while len(call.streams) < 2:
                    await asyncio.sleep(0.05)
            sales = call.streams[1]
            await sales.wait_for_audio(8)  # the agent speaks on over the new stream
            await sales.wait_for_silence(300, 10)
            await sales.say(outbound.SPEECH)
            await sales.wait_for_audio(8)
            await sales.wait_for_silence(300, 10)
            await sales.hang_up()
            detail = await outbound.record(server, call_id)
    assert delivering == [True]  # one call, its frames in the socket's callback
    assert call.digits_played == ["1w2"]
    assert menu.closed_by_server is False and not sales.protocol_errors
    assert len(sim.sessions) == 1
    assert detail.end_reason == "caller_hung_up"
    users = [t.text for t in detail.turns if t.role == "user"]
    assert users == ["For sales, press one then two", "Sales, how can I help?"]


# ------------------------------------------------------------ a chunk and its mark, one write


@pytest.mark.parametrize("sizes", [(10, 40), (125, 126), (300, 65535), (65536, 1)])
async def test_two_texts_in_one_write_arrive_as_two_frames_in_order(sizes) -> None:
    from tests.carriers.twilio.test_media_listener import served

    first, second = "a" * sizes[0], "b" * sizes[1]
    async with served() as (s, client):
        ws = await asyncio.wait_for(s.sockets.get(), 5)
        await ws.send_texts(first, second)
        await ws.send_text("after")
        assert await asyncio.wait_for(client.recv(), 5) == first
        assert await asyncio.wait_for(client.recv(), 5) == second
        assert await asyncio.wait_for(client.recv(), 5) == "after"


async def test_two_texts_wait_for_a_full_transport_and_raise_after_our_close() -> None:
    from starlette.websockets import WebSocketDisconnected

    from tests.carriers.twilio.test_media_listener import served

    async with served() as (s, client):
        ws = await asyncio.wait_for(s.sockets.get(), 5)
        ws.pause_writing()  # as the transport calls it when its buffer is full
        sending = asyncio.create_task(ws.send_texts("one", "two"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sending.done()
        ws.resume_writing()
        await asyncio.wait_for(sending, 5)
        assert [await asyncio.wait_for(client.recv(), 5) for _ in range(2)] == ["one", "two"]
        await ws.close(1000)
        with pytest.raises(WebSocketDisconnected):
            await ws.send_texts("three", "four")


async def test_on_the_listener_an_agent_chunk_and_its_mark_go_out_as_two_twilio_frames() -> None:
    sent = asyncio.Event()

    async def speak(call: TwilioCallAudio) -> None:
        await call.send_audio_marked(chunk(7), "m1")
        sent.set()
        async for _ in call.events():
            pass

    app = Listening(handle=speak)
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        media_frame = twilio.read_server_frame(await asyncio.wait_for(ws.recv(), 5))
        mark_frame = twilio.read_server_frame(await asyncio.wait_for(ws.recv(), 5))
        await ws.send(stop(2))
        await ws.close()
    assert media_frame == twilio.ServerMedia(SID, chunk(7))
    assert mark_frame == twilio.ServerMark(SID, "m1")


async def test_a_held_socket_reads_nothing_until_let_go_and_then_hands_the_frame_over() -> None:
    from tests.carriers.twilio.test_media_listener import served

    async with served() as (s, client):
        ws = await asyncio.wait_for(s.sockets.get(), 5)
        got: list[str | bytes] = []
        dispatching = asyncio.create_task(ws.dispatch(lambda data: got.append(data) or False))
        await client.send("first")
        await _within(_until(lambda: got), "the first frame never came")
        ws.hold_reading(True)  # the call is behind
        await client.send("second")
        await asyncio.sleep(0.2)
        assert got == ["first"]  # it waits in TCP, not in memory
        ws.hold_reading(False)
        await _within(_until(lambda: len(got) == 2), "the held frame never came")
        assert got == ["first", "second"]
        await client.close()
        assert await _within(dispatching, "dispatch did not end with the socket") is False
