"""Carrier events handed to the bridge as frames arrive (``CallAudio.deliver_to``, as
Twilio's stream does on the media listener, inside its socket's callback): each handler
runs at once; when one has to wait on the model, the events after it wait behind it in
order, and while that queue is long the carrier is asked to hold its frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from agentplatform.agents.spec import AgentSpec
from agentplatform.bridge import call as bridge_call
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.carriers.base import (
    CallAudio, CallInfo, CarrierEvent, InboundAudio, StreamStopped,
)
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.models import OpenedModel
from agentplatform.models import open_model as open_model_for_real
from agentplatform.realtime.base import (
    Capabilities, ModelEvent, ModelSession, SessionSetup,
)
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers

AGENT_SPEC = AgentSpec(name=fuzz_carriers.AGENT, model="openai/gpt-realtime",
                       g711_passthrough=True)


async def _within(waiting: Any, what: str) -> Any:
    try:
        async with asyncio.timeout(10):
            return await waiting
    except TimeoutError:
        raise AssertionError(what) from None


async def _until(condition: Callable[[], Any]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def frame(n: int) -> InboundAudio:
    return InboundAudio(bytes([n % 256]) * 160, n * 20)


class SlowModel(ModelSession):
    """Takes the caller's audio; the send of a chosen chunk waits until released."""

    capabilities = Capabilities(input_rate=8000, output_rate=8000, g711=True, truncates=True)

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self.audio: list[bytes] = []
        self.hold_chunk = -1
        self.fail = False
        self.release = asyncio.Event()
        self._ended = asyncio.Event()

    async def connect(self) -> None:
        return None

    async def send_audio(self, audio: bytes) -> None:
        if self.fail:
            raise RuntimeError("the model socket broke")
        self.audio.append(audio)
        if len(self.audio) - 1 == self.hold_chunk:
            await self.release.wait()

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        return None

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
        self._ended.set()


class DeliveringLine(CallAudio):
    """Hands events to the bridge's sink the moment the test delivers them."""

    def __init__(self) -> None:
        self.info = CallInfo(call_id="line-1", stream_id="s-1", agent=fuzz_carriers.AGENT,
                             carrier="test")
        self.sink: Callable[[CarrierEvent], None] | None = None
        self.holds: list[bool] = []
        self._ended = asyncio.Event()

    def deliver_to(self, sink: Callable[[CarrierEvent], None]) -> bool:
        self.sink = sink
        return True

    def hold_delivery(self, hold: bool) -> None:
        self.holds.append(hold)

    async def events(self) -> AsyncIterator[CarrierEvent]:
        await self._ended.wait()
        return
        yield

    async def send_audio(self, ulaw: bytes) -> None:
        return None

    async def send_mark(self, name: str) -> None:
        return None

    async def clear(self) -> None:
        return None

    async def hang_up(self, say: str | None = None) -> None:
        self._ended.set()

    async def transfer(self, number: str) -> None:
        return None

    async def close(self) -> None:
        self._ended.set()


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def _call(http: httpx.AsyncClient) -> tuple[DeliveringLine, SlowModel, asyncio.Task]:
    models: list[SlowModel] = []

    def open_model(agent: AgentSpec, model: Any, deps: Any, **prompt: Any) -> OpenedModel:
        real = open_model_for_real(agent, model, deps, **prompt)
        models.append(SlowModel(real.session.setup))
        return OpenedModel(models[-1], real.audio_format)

    deps = CallDeps(settings=Settings(_env_file=None, openai_api_key="sk-test"),
                    catalog=load_catalog(), recorder=fuzz_carriers._Recorder(), http=http,
                    open_model=open_model)
    line = DeliveringLine()
    call = asyncio.create_task(CallSession(line, AGENT_SPEC, deps).run())
    await _within(_until(lambda: line.sink is not None), "the bridge never asked for its events")
    return line, models[0], call


async def test_a_frame_reaches_the_model_before_the_carriers_callback_returns(http):
    line, model, call = await _call(http)
    line.sink(frame(1))
    assert model.audio == [frame(1).audio]  # no queue, no task switch in between
    line.sink(frame(2))
    assert model.audio == [frame(1).audio, frame(2).audio]
    line.sink(StreamStopped())
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP


async def test_frames_and_the_stop_after_a_handler_that_waits_keep_their_order(http):
    line, model, call = await _call(http)
    model.hold_chunk = 1  # the model is slow to take the second chunk
    for n in range(1, 6):
        line.sink(frame(n))
    line.sink(StreamStopped())
    assert model.audio == [frame(1).audio, frame(2).audio]
    assert not call.done()  # the stop waits behind the audio
    model.release.set()
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP
    assert model.audio == [frame(n).audio for n in range(1, 6)]


async def test_a_long_queue_behind_a_waiting_handler_holds_the_carriers_frames(http):
    line, model, call = await _call(http)
    model.hold_chunk = 0
    line.sink(frame(0))
    for n in range(1, bridge_call.CARRIER_BACKLOG_HOLD + 1):
        line.sink(frame(n))
    assert line.holds == []  # as many as may wait
    line.sink(frame(bridge_call.CARRIER_BACKLOG_HOLD + 1))
    assert line.holds == [True]
    model.release.set()
    await _within(_until(lambda: line.holds == [True, False]), "the frames were never let go")
    count = bridge_call.CARRIER_BACKLOG_HOLD + 2
    await _within(_until(lambda: len(model.audio) == count), "the queued audio never came")
    assert model.audio == [frame(n).audio for n in range(count)]
    line.sink(StreamStopped())
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP


async def test_a_carrier_handler_that_fails_ends_the_call_as_a_failed_task_does(http):
    line, model, call = await _call(http)
    model.fail = True
    line.sink(frame(1))
    assert await _within(call, "the call did not end") is EndReason.PROVIDER_ERROR


async def test_a_stream_that_ends_without_a_stop_ends_the_call_after_what_came_before(http):
    line, model, call = await _call(http)
    model.hold_chunk = 0
    line.sink(frame(0))
    line.sink(frame(1))
    line._ended.set()  # ``events()`` ends while the first frame's handler still waits
    for _ in range(20):
        await asyncio.sleep(0)
    assert not call.done()
    model.release.set()
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP
    assert model.audio == [frame(0).audio, frame(1).audio]
