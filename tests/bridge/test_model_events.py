"""Model events handed to the bridge as they arrive (``ModelSession.deliver_to``, as
OpenAI's session does inside its socket's callback): each handler runs at once, and
when one has to wait on the carrier, the events after it wait behind it, so the
carrier hears audio, marks and a barge-in's ``clear`` in the order the model sent them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from agentplatform.agents.spec import AgentSpec
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.carriers.base import CallAudio, CallInfo, CarrierEvent, StreamStopped
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.models import OpenedModel
from agentplatform.models import open_model as open_model_for_real
from agentplatform.realtime.base import (
    AudioDelta, Capabilities, ModelEvent, ModelSession, SessionSetup, SpeechStarted,
)
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers

AGENT_SPEC = AgentSpec(name=fuzz_carriers.AGENT, model="openai/gpt-realtime",
                       g711_passthrough=True)
CHUNK = b"\xff" * 160  # 20 ms of μ-law


async def _within(waiting: Any, what: str) -> Any:
    try:
        async with asyncio.timeout(10):
            return await waiting
    except TimeoutError:
        raise AssertionError(what) from None


async def _until(condition: Callable[[], Any]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


class DeliveringModel(ModelSession):
    """Hands events to the bridge's sink the moment the test delivers them."""

    capabilities = Capabilities(input_rate=8000, output_rate=8000, g711=True, truncates=True)

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self.sink: Callable[[ModelEvent], None] | None = None
        self.sent: list[str] = []
        self._ended = asyncio.Event()

    async def connect(self) -> None:
        return None

    def deliver_to(self, sink: Callable[[ModelEvent], None]) -> None:
        self.sink = sink

    async def send_audio(self, audio: bytes) -> None:
        return None

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        return None

    async def request_response(self, instructions: str | None = None) -> None:
        return None

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        return None

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.sent.append(f"truncate {item_id}")

    async def cancel_response(self) -> None:
        self.sent.append("cancel")

    async def events(self) -> AsyncIterator[ModelEvent]:
        await self._ended.wait()
        return
        yield  # an async generator that yields nothing: the events go to the sink

    async def close(self) -> None:
        self._ended.set()


class SlowLine(CallAudio):
    """Records what the bridge sends; the send of a chosen chunk waits until released."""

    def __init__(self) -> None:
        self.info = CallInfo(call_id="line-1", stream_id="s-1", agent=fuzz_carriers.AGENT,
                             carrier="test")
        self.sent: list[str] = []
        self.hold_chunk = -1  # the index of the chunk whose send waits
        self.release = asyncio.Event()
        self._events: asyncio.Queue[CarrierEvent | None] = asyncio.Queue()

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def send_audio(self, ulaw: bytes) -> None:
        chunks = sum(1 for s in self.sent if s == "media")
        self.sent.append("media")
        if chunks == self.hold_chunk:
            await self.release.wait()

    async def send_mark(self, name: str) -> None:
        self.sent.append("mark")

    async def clear(self) -> None:
        self.sent.append("clear")

    async def hang_up(self, say: str | None = None) -> None:
        self._events.put_nowait(None)

    async def transfer(self, number: str) -> None:
        return None

    async def close(self) -> None:
        self._events.put_nowait(None)


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def _call(http: httpx.AsyncClient) -> tuple[SlowLine, DeliveringModel, asyncio.Task, Any]:
    models: list[DeliveringModel] = []

    def open_model(agent: AgentSpec, model: Any, deps: Any, **prompt: Any) -> OpenedModel:
        real = open_model_for_real(agent, model, deps, **prompt)
        models.append(DeliveringModel(real.session.setup))
        return OpenedModel(models[-1], real.audio_format)

    recorder = fuzz_carriers._Recorder()
    deps = CallDeps(settings=Settings(_env_file=None, openai_api_key="sk-test"),
                    catalog=load_catalog(), recorder=recorder, http=http, open_model=open_model)
    line = SlowLine()
    call = asyncio.create_task(CallSession(line, AGENT_SPEC, deps).run())
    await _within(_until(lambda: models and models[0].sink is not None),
                  "the bridge never asked for its events")
    return line, models[0], call, recorder


async def test_a_delta_reaches_the_carrier_before_the_model_sockets_callback_returns(http):
    line, model, call, _ = await _call(http)
    model.sink(AudioDelta("item-1", CHUNK))
    assert line.sent == ["media", "mark"]  # no queue, no task switch in between
    model.sink(AudioDelta("item-1", CHUNK))
    assert line.sent == ["media", "mark"] * 2
    line._events.put_nowait(StreamStopped())
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP


async def test_events_after_a_handler_that_waits_on_the_carrier_keep_their_order(http):
    line, model, call, _ = await _call(http)
    line.hold_chunk = 1  # the second chunk's send waits
    model.sink(AudioDelta("item-1", CHUNK))
    model.sink(AudioDelta("item-1", CHUNK))
    model.sink(AudioDelta("item-1", CHUNK))  # arrive while the second one waits
    model.sink(SpeechStarted("user-1"))
    assert line.sent == ["media", "mark", "media"]
    assert model.sent == []  # the barge-in has not overtaken the audio before it
    line.release.set()
    await _within(_until(lambda: "clear" in line.sent), "the barge-in was never handled")
    assert line.sent == ["media", "mark", "media", "mark", "media", "mark", "clear"]
    assert model.sent == ["truncate item-1", "cancel"]
    model.sink(AudioDelta("item-2", CHUNK))  # and afterwards at once again
    assert line.sent[-2:] == ["media", "mark"]
    line._events.put_nowait(StreamStopped())
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP


async def test_a_handler_that_fails_ends_the_call_as_a_failed_task_does(http):
    line, model, call, _ = await _call(http)
    model.sink(AudioDelta("item-1", None))  # type: ignore[arg-type]
    assert await _within(call, "the call did not end") is EndReason.PROVIDER_ERROR
