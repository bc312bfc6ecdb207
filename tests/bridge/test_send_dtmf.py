"""How the bridge carries out ``send_dtmf``: through the carrier, and the model hears
whether the keys went out."""

from __future__ import annotations

import asyncio
from typing import Any

from agentplatform.agents.spec import AgentSpec, SendDtmfTool
from agentplatform.bridge.call import CallSession
from agentplatform.carriers.base import StreamStopped
from agentplatform.realtime.base import ToolCall
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers
from tests.bridge.test_transfer import (  # noqa: F401 - the http fixture
    TransferLine, TransferringModel, _deps, _until, _within, http,
)

AGENT = AgentSpec(name=fuzz_carriers.AGENT, model="openai/gpt-realtime", g711_passthrough=True,
                  tools=[SendDtmfTool()])


class KeyPressingModel(TransferringModel):
    def __init__(self, setup, arguments: str) -> None:
        super().__init__(setup)
        self.arguments = arguments

    async def connect(self) -> None:
        self._events.put_nowait(ToolCall("call-1", "send_dtmf", self.arguments))


class KeyLine(TransferLine):
    def __init__(self, models, *, can: bool) -> None:
        super().__init__("ok", models)
        self.can = can
        self.keys: list[str] = []

    async def send_dtmf(self, digits: str) -> None:
        if not self.can:
            await super().send_dtmf(digits)  # the seam's default: this carrier cannot
        self.keys.append(digits)


async def _press(http, *, can: bool, arguments: str = '{"digits": "1w2#"}') -> tuple[KeyLine, Any, Any]:
    recorder, models = fuzz_carriers._Recorder(), []
    deps = _deps(recorder, models, http)
    opener = deps.open_model

    def open_model(agent, model, d, **prompt):
        opened = opener(agent, model, d, **prompt)
        models[-1] = KeyPressingModel(opened.session.setup, arguments)
        return type(opened)(models[-1], opened.audio_format)

    deps.open_model = open_model
    line = KeyLine(models, can=can)
    call = asyncio.create_task(CallSession(line, AGENT, deps).run())
    await _within(_until(lambda: models and models[0].tool_results), "no tool result reached the model")
    line.push(StreamStopped())
    assert await _within(call, "the call did not end") is EndReason.CALLER_HUNG_UP
    return line, models[0], recorder


async def test_keys_go_through_the_carrier_and_the_model_hears_they_were_pressed(http):
    line, model, _ = await _press(http, can=True)
    assert line.keys == ["1w2#"]
    assert model.tool_results == [("send_dtmf", "Pressed 1 w 2 #.")]


async def test_a_carrier_that_cannot_send_keys_makes_the_tool_fail_for_the_model(http):
    line, model, _ = await _press(http, can=False)
    assert line.keys == []
    [(name, output)] = model.tool_results
    assert name == "send_dtmf" and "could not be pressed" in output and "cannot send DTMF" in output


async def test_bad_keys_never_reach_the_carrier(http):
    line, model, _ = await _press(http, can=True, arguments='{"digits": "12x"}')
    assert line.keys == []
    assert "'X' is not a DTMF key" in model.tool_results[0][1]
