"""How the bridge records a line the carrier ended itself (``StreamStopped.reason``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentplatform.bridge.call import CallSession
from agentplatform.carriers.base import CallAudio, CallInfo, CarrierEvent, StreamStopped
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers


class EndingLine(CallAudio):
    """A carrier that ends the line after the greeting has started, as told."""

    def __init__(self, stopped: StreamStopped) -> None:
        self.info = CallInfo(call_id="line-1", stream_id="s-1", agent=fuzz_carriers.AGENT,
                             carrier="test")
        self._stopped = stopped

    async def events(self) -> AsyncIterator[CarrierEvent]:
        await asyncio.sleep(0.05)
        yield self._stopped

    async def send_audio(self, ulaw: bytes) -> None:
        return None

    async def send_mark(self, name: str) -> None:
        return None

    async def clear(self) -> None:
        return None

    async def hang_up(self, say: str | None = None) -> None:
        return None

    async def transfer(self, number: str) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("stopped", "recorded"), [
    (StreamStopped(), EndReason.CALLER_HUNG_UP),
    (StreamStopped(reason="media_timeout", detail="no RTP"), EndReason.MEDIA_TIMEOUT),
    (StreamStopped(reason="carrier_error", detail="SIP: no_ack"), EndReason.CARRIER_ERROR),
    (StreamStopped(reason="something_new"), EndReason.CARRIER_ERROR),
])
async def test_a_line_the_carrier_ended_is_recorded_with_the_carriers_reason(stopped, recorded):
    recorder = fuzz_carriers._Recorder()
    session = CallSession(EndingLine(stopped), fuzz_carriers.AGENT_SPEC,
                          fuzz_carriers._deps(recorder, []))
    assert await asyncio.wait_for(session.run(), 10) is recorded
