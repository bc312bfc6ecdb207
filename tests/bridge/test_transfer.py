"""How the bridge carries out ``transfer_call``: after the handoff has been heard,
while the model is still there, so that a transfer the carrier could not make
leaves the caller with the agent, which is told so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agentplatform.agents.spec import AgentSpec, EndCallTool, Limits, TransferCallTool
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.carriers.base import (
    CallAudio, CallInfo, CarrierEvent, InboundAudio, MarkPlayed, StreamStopped,
)
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.models import OpenedModel
from agentplatform.models import open_model as open_model_for_real
from agentplatform.realtime.base import (
    AudioDelta, AudioDone, Capabilities, ModelEvent, ModelSession, ResponseDone, SessionSetup,
    ToolCall,
)
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers
from agentplatform.testing import twilio_wire as twilio
from agentplatform.testing.twilio_fuzz_scripts import ACCOUNT, CALL, SID, TOKENS

RECEPTION = "+15555550199"
REFUSED = "REFER to sip:+15555550199@trunk refused: 603 Decline"
CALLER_AUDIO = bytes(range(0x40, 0x40 + 160))
AGENT_SPEC = AgentSpec(
    name=fuzz_carriers.AGENT, model="openai/gpt-realtime", g711_passthrough=True,
    tools=[TransferCallTool(destinations={"reception": RECEPTION}), EndCallTool()],
)


async def _within(waiting: Any, what: str) -> Any:
    try:
        async with asyncio.timeout(10):
            return await waiting
    except TimeoutError:
        raise AssertionError(what) from None


class TransferringModel(ModelSession):
    """A model that asks for the transfer at once, speaks a short answer to every
    tool result and every message, and records what it is sent."""

    capabilities = Capabilities(input_rate=8000, output_rate=8000, g711=True)

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self.tool_results: list[tuple[str, str]] = []
        self.texts: list[str] = []
        self.audio: list[bytes] = []
        self.closed = False
        self.told = asyncio.Event()
        self.heard_caller = asyncio.Event()
        self._events: asyncio.Queue[ModelEvent | None] = asyncio.Queue()

    async def connect(self) -> None:
        self._events.put_nowait(ToolCall("call-1", "transfer_call", '{"destination": "reception"}'))

    def _say(self, item: str) -> None:
        self._events.put_nowait(AudioDelta(item, b"\xff" * 1600))  # 200 ms
        self._events.put_nowait(AudioDone(item))
        self._events.put_nowait(ResponseDone())

    async def send_audio(self, audio: bytes) -> None:
        self.audio.append(audio)
        if audio == CALLER_AUDIO:
            self.heard_caller.set()

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        self.texts.append(text)
        self.told.set()
        if respond:
            self._say(f"text-{len(self.texts)}")

    async def request_response(self, instructions: str | None = None) -> None:
        self._say("asked")

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self.tool_results.append((name, output))
        self._say(f"result-{len(self.tool_results)}")

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        return None

    async def cancel_response(self) -> None:
        return None

    async def events(self) -> AsyncIterator[ModelEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> None:
        self.closed = True
        self._events.put_nowait(None)


def _deps(recorder: fuzz_carriers._Recorder, models: list[TransferringModel],
          http: httpx.AsyncClient, **extra: Any) -> CallDeps:
    def open_model(agent: AgentSpec, model: Any, deps: Any, **prompt: Any) -> OpenedModel:
        real = open_model_for_real(agent, model, deps, **prompt)
        models.append(TransferringModel(real.session.setup))
        return OpenedModel(models[-1], real.audio_format)

    return CallDeps(settings=Settings(_env_file=None, openai_api_key="sk-test"),
                    catalog=load_catalog(), recorder=recorder, http=http,
                    open_model=open_model, **extra)


class TransferLine(CallAudio):
    """A carrier whose transfer succeeds (and ends our leg, as a carrier does),
    fails with a ``CarrierError``, or never returns. Marks are played at once."""

    def __init__(self, outcome: str, models: list[TransferringModel]) -> None:
        self.info = CallInfo(call_id="line-1", stream_id="s-1", agent=fuzz_carriers.AGENT,
                             carrier="test")
        self.outcome = outcome
        self.models = models
        self.actions: list[str] = []
        self.audio_sent = 0
        self.at_transfer: dict[str, Any] = {}
        self._events: asyncio.Queue[CarrierEvent | None] = asyncio.Queue()

    def push(self, event: CarrierEvent) -> None:
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def send_audio(self, ulaw: bytes) -> None:
        self.audio_sent += len(ulaw)

    async def send_mark(self, name: str) -> None:
        self.push(MarkPlayed(name))

    async def clear(self) -> None:
        return None

    async def hang_up(self, say: str | None = None) -> None:
        self.actions.append("hang_up")
        self._events.put_nowait(None)

    async def transfer(self, number: str) -> None:
        self.actions.append(f"transfer {number}")
        self.at_transfer = {"model_open": not self.models[0].closed,
                            "audio_sent": self.audio_sent}
        if self.outcome == "fail":
            raise CarrierError(REFUSED)
        if self.outcome == "hang":
            await asyncio.Event().wait()
        self.push(StreamStopped())

    async def close(self) -> None:
        self.actions.append("close")
        self._events.put_nowait(None)


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def _a_transfer_that_fails(line: TransferLine, models: list[TransferringModel],
                                 recorder: fuzz_carriers._Recorder, deps: CallDeps) -> None:
    session = CallSession(line, AGENT_SPEC, deps)
    call = asyncio.create_task(session.run())
    await _within(_until(lambda: models and models[0].told.is_set()),
                  "the model was never told the transfer failed")
    line.push(InboundAudio(CALLER_AUDIO, timestamp_ms=1000))
    await _within(models[0].heard_caller.wait(), "the caller's audio no longer reached the model")
    line.push(StreamStopped())  # later the caller hangs up
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_transfer_the_carrier_refuses_keeps_the_caller_with_the_agent_which_is_told(http):
    recorder, models = fuzz_carriers._Recorder(), []
    line = TransferLine("fail", models)
    await _a_transfer_that_fails(line, models, recorder, _deps(recorder, models, http))

    assert line.actions == [f"transfer {RECEPTION}", "close"]  # no hang-up: the caller stayed
    assert line.at_transfer == {"model_open": True, "audio_sent": 1600}  # handoff heard first
    model = models[0]
    assert [name for name, _ in model.tool_results] == ["transfer_call"]
    assert len(model.texts) == 1
    assert "reception" in model.texts[0] and "did not go through" in model.texts[0]
    assert RECEPTION not in model.texts[0]  # the model never sees the numbers
    failed = [detail for kind, detail in recorder.events if kind == "transfer_failed"]
    assert failed == [{"destination": "reception", "number": RECEPTION, "detail": REFUSED}]


async def test_a_transfer_the_carrier_never_finishes_fails_after_the_bound(http):
    recorder, models = fuzz_carriers._Recorder(), []
    line = TransferLine("hang", models)
    await _a_transfer_that_fails(line, models, recorder,
                                 _deps(recorder, models, http, transfer_timeout=0.2))

    failed = [detail for kind, detail in recorder.events if kind == "transfer_failed"]
    assert len(failed) == 1 and "0.2 s" in failed[0]["detail"]
    assert "did not go through" in models[0].texts[0]


async def test_after_a_failed_transfer_the_agent_can_still_end_the_call(http):
    recorder, models = fuzz_carriers._Recorder(), []
    line = TransferLine("fail", models)
    session = CallSession(line, AGENT_SPEC, _deps(recorder, models, http))
    call = asyncio.create_task(session.run())
    await _within(_until(lambda: models and models[0].told.is_set()),
                  "the model was never told the transfer failed")
    models[0]._events.put_nowait(ToolCall("call-2", "end_call", "{}"))
    assert await _within(call, "the call did not end") is EndReason.AGENT_ENDED
    assert line.actions == [f"transfer {RECEPTION}", "hang_up"]


async def test_a_successful_transfer_ends_transferred_with_the_model_still_open_until_then(http):
    recorder, models = fuzz_carriers._Recorder(), []
    line = TransferLine("succeed", models)
    session = CallSession(line, AGENT_SPEC, _deps(recorder, models, http))

    assert await _within(session.run(), "the call did not end") is EndReason.TRANSFERRED
    assert line.actions == [f"transfer {RECEPTION}"]  # the transfer released the line
    assert line.at_transfer == {"model_open": True, "audio_sent": 1600}
    assert models[0].closed and models[0].texts == []
    assert not [kind for kind, _ in recorder.events if kind == "transfer_failed"]


async def test_a_time_limit_passed_during_a_failed_transfer_still_ends_the_call(http):
    recorder, models = fuzz_carriers._Recorder(), []
    line = TransferLine("hang", models)
    # Below the agent file's 10 s floor, so that the limit passes while the transfer runs.
    spec = AGENT_SPEC.model_copy(update={"limits": Limits.model_construct(max_call_seconds=0.1)})
    session = CallSession(line, spec, _deps(recorder, models, http, transfer_timeout=0.5))

    assert await _within(session.run(), "the call did not end") is EndReason.LIMIT_REACHED
    kinds = [kind for kind, _ in recorder.events]
    assert kinds.index("transfer_failed") < kinds.index("limit_reached")
    assert line.actions == [f"transfer {RECEPTION}", "hang_up"]
    assert "did not go through" in models[0].texts[0]


# ------------------------------------------------------------------ the Twilio path


class TwilioControl:
    """Twilio's REST side: replacing the call's TwiML with a ``<Dial>`` makes
    Twilio end the media stream with ``stop``."""

    def __init__(self, socket: TwilioSocket, models: list[TransferringModel]) -> None:
        self.socket = socket
        self.models = models
        self.calls: list[tuple[str, str]] = []
        self.model_open_at_transfer: bool | None = None

    async def hang_up(self, call_sid: str, say: str | None = None) -> None:
        self.calls.append(("hang_up", call_sid))

    async def transfer(self, call_sid: str, number: str) -> None:
        self.calls.append(("transfer", number))
        self.model_open_at_transfer = not self.models[0].closed
        self.socket.stop_stream()


class TwilioSocket:
    """The WebSocket surface ``TwilioCallAudio`` uses, as Twilio: marks echo at once."""

    def __init__(self) -> None:
        self._frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._seq = 0
        self.closed: int | None = None
        token = TOKENS.mint(CALL, fuzz_carriers.AGENT, 600)
        self._text(twilio.connected())
        self._text(twilio.start(stream_sid=SID, account_sid=ACCOUNT, call_sid=CALL,
                                sequence_number=self._next(),
                                custom_parameters={"token": token, "agent": fuzz_carriers.AGENT}))

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _text(self, message: dict[str, Any]) -> None:
        self._frames.put_nowait({"type": "websocket.receive", "text": twilio.encode(message)})

    def stop_stream(self) -> None:
        self._text(twilio.stop(stream_sid=SID, sequence_number=self._next(),
                               account_sid=ACCOUNT, call_sid=CALL))

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        if self.closed is not None:
            return {"type": "websocket.disconnect", "code": self.closed}
        return await self._frames.get()

    async def send_text(self, text: str) -> None:
        message = twilio.read_server_frame(text)
        if isinstance(message, twilio.ServerMark):
            self._text(twilio.mark(stream_sid=SID, sequence_number=self._next(),
                                   name=message.name))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code
        self._frames.put_nowait({"type": "websocket.disconnect", "code": code})


async def test_a_twilio_transfer_ends_transferred_when_twilio_stops_the_stream(http):
    recorder, models = fuzz_carriers._Recorder(), []
    socket = TwilioSocket()
    control = TwilioControl(socket, models)
    stream = TwilioCallAudio(socket, tokens=TOKENS, control=control,  # type: ignore[arg-type]
                             start_timeout=5)
    await stream.accept_and_start()
    session = CallSession(stream, AGENT_SPEC, _deps(recorder, models, http))

    assert await _within(session.run(), "the call did not end") is EndReason.TRANSFERRED
    assert control.calls == [("transfer", RECEPTION)]
    assert control.model_open_at_transfer
    assert socket.closed is None  # the stream is Twilio's to end once it dials
