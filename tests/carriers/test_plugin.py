"""The carrier context: the platform's services, bound to one carrier's name."""

from __future__ import annotations

import pytest

from agentplatform.carriers.base import CallInfo
from agentplatform.carriers.plugin import CarrierContext
from agentplatform.config import Settings
from agentplatform.single_use import MemorySingleUse


class Services:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def admit_call(self, *args: str) -> str | None:
        self.calls.append(("admit", *args))
        return None

    async def handle_call(self, audio) -> None:
        self.calls.append(("handle", audio.info.call_id))

    def count_malformed(self, *args) -> None:
        self.calls.append(("malformed", *args))


class Audio:
    def __init__(self, carrier: str) -> None:
        self.info = CallInfo(call_id="c1", stream_id="s1", carrier=carrier)


def context(services: Services) -> CarrierContext:
    return CarrierContext(carrier="sip", settings=Settings(_env_file=None),
                          single_use=MemorySingleUse(), services=lambda: services)


async def test_admission_and_malformed_counts_go_under_the_carriers_own_name() -> None:
    services = Services()
    ctx = context(services)
    assert await ctx.admit("call-1", "desk", "+1555", "+1666") is None
    ctx.count_malformed("bad_start_line")
    assert services.calls == [("admit", "sip", "call-1", "desk", "+1555", "+1666"),
                              ("malformed", "sip", "bad_start_line", 1)]


async def test_a_call_is_handed_over_only_under_the_carriers_own_name() -> None:
    services = Services()
    ctx = context(services)
    await ctx.handle_call(Audio("sip"))
    with pytest.raises(ValueError, match="says carrier 'twilio'"):
        await ctx.handle_call(Audio("twilio"))
    assert services.calls == [("handle", "c1")]
