"""The dial service: checks, spend controls and the queued record come before the
carrier dials; every refusal says why, and the recorded ones can be found."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentplatform.agents.store import AgentStore
from agentplatform.carriers.dialing import MachineDetection, OutboundRequest
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.limits.admission import Admission
from agentplatform.limits.drain import Drain
from agentplatform.limits.gate import CallGate
from agentplatform.limits.store import DatabaseLimitStore
from agentplatform.outbound import DialRefusal, DialRefused, Dialer, DialRequest
from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.storage.schema import upgrade_database
from agentplatform.storage.writer import CallWriter

AGENT = """\
name: reminders
model: openai/gpt-realtime
prompt: You call people. This is {{params.name}}.
phone_numbers: ["+15555550100"]
limits:
  max_concurrent_calls: 1
"""
TO = "+15555550142"


@dataclass
class FakeCarrier:
    """A carrier that records what it was asked to dial, and what the record said then."""

    name: str = "twilio"
    can_dial: bool = True
    problem: str | None = None
    fail: str = ""
    writer: CallWriter | None = None
    engine: object = None
    placed: list[OutboundRequest] = field(default_factory=list)
    status_when_dialed: list[str | None] = field(default_factory=list)

    def dial_problem(self) -> str | None:
        return self.problem

    async def place_call(self, request: OutboundRequest) -> None:
        assert self.writer is not None
        await self.writer.flush()
        found = queries.get_call(self.engine, request.call_id)
        self.status_when_dialed.append(found.status if found else None)
        if self.fail:
            raise CarrierError(self.fail)
        self.placed.append(request)


@dataclass
class Rig:
    dialer: Dialer
    carrier: FakeCarrier
    writer: CallWriter
    engine: object
    drain: Drain

    async def record(self, call_id: str):
        await self.writer.flush()
        return queries.get_call(self.engine, call_id)


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, **carrier: object) -> AsyncIterator[Rig]:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "reminders.yaml").write_text(AGENT)
    settings = Settings(_env_file=None, agents_dir=tmp_path / "agents")  # type: ignore[call-arg]
    engine = make_engine(f"sqlite:///{tmp_path / 'calls.db'}")
    upgrade_database(engine)
    writer = CallWriter(engine)
    writer.start()
    drain = Drain("draining", 30)
    admission = Admission(CallGate(DatabaseLimitStore(engine), engine, settings), drain, writer)
    fake = FakeCarrier(writer=writer, engine=engine, **carrier)  # type: ignore[arg-type]
    dialer = Dialer(AgentStore(settings.agents_dir, load_catalog(), settings), [fake], writer,
                    admission=admission)
    try:
        yield Rig(dialer, fake, writer, engine, drain)
    finally:
        await writer.stop()
        engine.dispose()


async def test_the_record_is_queued_before_the_carrier_dials_with_the_request_facts(tmp_path):
    async with rig(tmp_path) as r:
        call_id = await r.dialer.dial(DialRequest(
            agent="reminders", to_number=TO, params={"name": "Ada"},
            machine_detection=MachineDetection.LEAVE_MESSAGE, voicemail_message="Call back."))
        detail = await r.record(call_id)
    assert r.carrier.status_when_dialed == ["queued"]
    [placed] = r.carrier.placed
    assert placed.call_id == call_id and placed.from_number == "+15555550100"  # agent's number
    assert (placed.params, placed.voicemail_message) == ({"name": "Ada"}, "Call back.")
    assert (detail.direction, detail.status, detail.end_reason) == ("outbound", "queued", None)
    assert (detail.to_number, detail.carrier, detail.machine_detection) == (
        TO, "twilio", "leave_message")
    assert detail.parameters == {"name": "Ada"}


async def _refused(r: Rig, **request: object) -> DialRefused:
    with pytest.raises(DialRefused) as caught:
        await r.dialer.dial(DialRequest(**{"agent": "reminders", "to_number": TO, **request}))
    return caught.value


async def test_bad_requests_are_refused_with_a_reason_and_nothing_recorded_or_dialed(tmp_path):
    async with rig(tmp_path) as r:
        unknown = await _refused(r, agent="nobody")
        bad_number = await _refused(r, to_number="5551234")
        bad_carrier = await _refused(r, carrier="fax")
        await r.writer.flush()
        calls = queries.list_calls(r.engine)
    assert (unknown.reason, unknown.call_id) == (DialRefusal.UNKNOWN_AGENT, None)
    assert "nobody" in unknown.message
    assert bad_number.reason == DialRefusal.INVALID and "E.164" in bad_number.message
    assert bad_carrier.reason == DialRefusal.CARRIER_UNAVAILABLE
    assert "enabled: twilio" in bad_carrier.message
    assert calls == [] and r.carrier.placed == []


async def test_a_carrier_that_cannot_dial_says_why(tmp_path):
    async with rig(tmp_path, problem="set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN") as r:
        refused = await _refused(r)
    assert refused.reason == DialRefusal.CARRIER_UNAVAILABLE
    assert "TWILIO_ACCOUNT_SID" in refused.message


async def test_the_agents_concurrency_limit_counts_a_ringing_call_and_the_refusal_is_recorded(
        tmp_path):
    async with rig(tmp_path) as r:
        first = await r.dialer.dial(DialRequest(agent="reminders", to_number=TO))
        busy = await _refused(r)
        refused_row = await r.record(busy.call_id)
        await r.dialer.release(first)  # the first call ended
        again = await r.dialer.dial(DialRequest(agent="reminders", to_number=TO))
    assert busy.reason == DialRefusal.BUSY and "max_concurrent_calls 1" in busy.message
    assert (refused_row.end_reason, refused_row.direction, refused_row.status) == (
        "busy", "outbound", "ended")
    assert len(r.carrier.placed) == 2 and again != first


async def test_a_draining_server_places_no_call(tmp_path):
    async with rig(tmp_path) as r:
        r.drain.draining = True
        refused = await _refused(r)
    assert refused.reason == DialRefusal.DRAINING and r.carrier.placed == []


async def test_a_carrier_failure_closes_the_record_failed_and_frees_the_slot(tmp_path):
    async with rig(tmp_path, fail="Twilio refused the call: 400 21211 Invalid 'To'") as r:
        refused = await _refused(r)
        detail = await r.record(refused.call_id)
        r.carrier.fail = ""
        await r.dialer.dial(DialRequest(agent="reminders", to_number=TO))  # slot was freed
    assert refused.reason == DialRefusal.FAILED and "21211" in refused.message
    assert (detail.end_reason, detail.status) == ("failed", "ended")
    assert "21211" in detail.end_detail
