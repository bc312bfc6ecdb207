"""Platform.dial_ended: a call nobody answered closes its queued record and frees the
agent's slot, whichever server process the carrier's word reaches."""

from __future__ import annotations

import asyncio

from agentplatform.agents.spec import AgentSpec, Limits
from agentplatform.app import Platform
from agentplatform.carriers.dialing import OutboundRequest
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.limits.admission import Admission
from agentplatform.limits.drain import Drain
from agentplatform.limits.gate import CallGate
from agentplatform.limits.store import DatabaseLimitStore
from agentplatform.records import CallStart
from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.storage.schema import upgrade_database
from agentplatform.storage.writer import CallWriter

AGENT = AgentSpec(name="reminders", limits=Limits(max_concurrent_calls=1))


def request(call_id: str) -> OutboundRequest:
    return OutboundRequest(call_id=call_id, agent="reminders", to_number="+15555550142",
                           from_number="+15555550100", carrier="twilio")


async def test_the_slot_is_freed_even_when_another_process_dialed_the_call(tmp_path):
    settings = Settings(_env_file=None, agents_dir=tmp_path)  # type: ignore[call-arg]
    engine = make_engine(f"sqlite:///{tmp_path / 'calls.db'}")
    upgrade_database(engine)
    writer = CallWriter(engine)
    writer.start()
    try:
        def gate() -> CallGate:
            return CallGate(DatabaseLimitStore(engine), engine, settings)

        dialing, other = gate(), gate()  # two server processes on one database
        here = Platform(settings, load_catalog(), None, writer, None,  # type: ignore[arg-type]
                        admission=Admission(other, Drain("", 1), writer))
        assert await dialing.claim("c1", AGENT) is None  # the dial took the one slot
        writer.call_queued(CallStart(call_id="c1", carrier_call_id="CA1", agent="reminders",
                                     model="openai/gpt-realtime", carrier="twilio",
                                     outbound=True), "off")
        assert await other.claim("c2", AGENT) is not None  # busy
        here.dial_ended(request("c1"), "no_answer", "Twilio status no-answer")
        here.dial_ended(request("c3"), "exploded", "")  # an unknown reason is a failure
        await asyncio.gather(*here._background)
        assert await other.claim("c2", AGENT) is None
        await writer.flush()
        record = queries.get_call(engine, "c1")
    finally:
        await writer.stop()
        engine.dispose()
    assert (record.end_reason, record.end_detail, record.status) == (
        "no_answer", "Twilio status no-answer", "ended")
