"""Open calls carry a lease their process renews; a call whose lease ran out is closed
as ``server_lost`` by whichever process notices, once, with what was recorded."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from agentplatform.catalog import load_catalog
from agentplatform.realtime.base import Usage
from agentplatform.records import CallStart, EndReason
from agentplatform.storage.closing import CLOSE_COLUMNS, close_call
from agentplatform.storage.database import make_engine
from agentplatform.storage.liveness import close_lost_calls
from agentplatform.storage.models import Call, utcnow
from agentplatform.storage.queries import get_call
from agentplatform.storage.writer import CallWriter

PER_MINUTE_MODEL = "xai/grok-voice"  # $0.05 per model-session minute, no token prices


def _start(model: str = "openai/gpt-realtime") -> CallStart:
    call_id = uuid.uuid4().hex
    return CallStart(call_id=call_id, carrier_call_id="CA" + call_id, agent="front-desk",
                     model=model, carrier="twilio")


def _lease_of(engine: Engine, call_id: str) -> tuple[datetime | None, datetime | None]:
    with Session(engine) as session:
        return session.exec(select(Call.lease_expires_at, Call.last_seen_at)
                            .where(Call.id == call_id)).one()


def _expire(engine: Engine, call_id: str, *, seen: datetime) -> None:
    """As if the call's server died at ``seen`` and its lease has since run out."""
    with Session(engine) as session:
        session.exec(update(Call).where(Call.id == call_id).values(
            lease_expires_at=utcnow() - timedelta(seconds=1), last_seen_at=seen))
        session.commit()


async def _recorded_then_died(engine: Engine, model: str) -> CallStart:
    """A call with a model session, usage and a turn, whose writer then stopped
    without closing it (its process was killed)."""
    writer = CallWriter(engine, catalog=load_catalog())
    writer.start()
    start = _start(model)
    writer.call_started(start)
    writer.model_served(start.call_id, model)
    writer.usage(start.call_id, model, Usage(output_audio=1000))
    writer.turn(start.call_id, "assistant", "Thanks for calling.")
    await writer.stop()
    return start


async def test_a_running_writer_keeps_renewing_its_open_calls_leases(engine: Engine) -> None:
    writer = CallWriter(engine, lease_seconds=0.3)
    writer.start()
    try:
        start = _start()
        writer.call_started(start)
        await writer.flush()
        first_lease, first_seen = _lease_of(engine, start.call_id)
        assert first_lease is not None and first_seen is not None
        async with asyncio.timeout(10):
            while _lease_of(engine, start.call_id)[0] == first_lease:
                await asyncio.sleep(0.05)
        lease, seen = _lease_of(engine, start.call_id)
        assert lease > first_lease and seen > first_seen
        assert close_lost_calls(engine) == []  # renewed: not lost
        writer.call_ended(start.call_id, EndReason.CALLER_HUNG_UP)
        await writer.flush()
        assert _lease_of(engine, start.call_id)[0] is None  # a closed call holds no lease
    finally:
        await writer.stop()


async def test_a_call_whose_lease_ran_out_is_closed_as_server_lost_with_what_was_recorded(
    engine: Engine,
) -> None:
    start = await _recorded_then_died(engine, PER_MINUTE_MODEL)
    before = get_call(engine, start.call_id)
    assert before is not None and before.ended_at is None
    assert close_lost_calls(engine) == []  # its lease has not run out yet

    seen = before.model_connected_at + timedelta(seconds=60)
    _expire(engine, start.call_id, seen=seen)
    assert close_lost_calls(engine, catalog=load_catalog()) == [start.call_id]

    after = get_call(engine, start.call_id)
    assert after is not None
    assert (after.end_reason, after.ended_at) == ("server_lost", seen)
    assert after.duration_seconds == (seen - after.started_at).total_seconds()
    assert after.audio_seconds == 60.0
    assert after.output_audio_tokens == 1000
    assert abs(after.cost_usd - 0.05) < 1e-9  # one model-session minute
    assert [t.text for t in after.turns] == ["Thanks for calling."]
    assert close_lost_calls(engine) == []  # closed once


async def test_a_lost_call_ends_at_its_last_record_when_that_came_after_the_last_renewal(
    engine: Engine,
) -> None:
    start = await _recorded_then_died(engine, PER_MINUTE_MODEL)
    detail = get_call(engine, start.call_id)
    _expire(engine, start.call_id, seen=detail.started_at)  # never renewed
    assert close_lost_calls(engine) == [start.call_id]
    after = get_call(engine, start.call_id)
    assert after.ended_at == after.turns[-1].created_at > after.started_at


async def test_two_processes_sweeping_at_once_close_a_lost_call_once(engine: Engine) -> None:
    start = await _recorded_then_died(engine, PER_MINUTE_MODEL)
    connected = get_call(engine, start.call_id).model_connected_at
    _expire(engine, start.call_id, seen=connected + timedelta(seconds=60))
    url = engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url) for _ in range(4)]
    gate = threading.Barrier(len(engines))
    results: list[list[str] | BaseException] = []

    def sweep(own: Engine) -> None:
        gate.wait()
        try:
            results.append(close_lost_calls(own, catalog=load_catalog()))
        except BaseException as exc:  # noqa: BLE001 - reported through the assertion
            results.append(exc)

    threads = [threading.Thread(target=sweep, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for own in engines:
        own.dispose()
    assert sorted(map(str, results)) == sorted(["[]"] * 3 + [str([start.call_id])])
    after = get_call(engine, start.call_id)
    assert abs(after.cost_usd - 0.05) < 1e-9  # the time was billed once


async def test_a_lease_renewed_after_the_sweeper_looked_keeps_the_call_open(
    engine: Engine,
) -> None:
    start = await _recorded_then_died(engine, PER_MINUTE_MODEL)
    _expire(engine, start.call_id, seen=utcnow())
    now = utcnow()
    with Session(engine) as session:
        row = session.exec(select(*CLOSE_COLUMNS).where(Call.id == start.call_id)).one()
    # Its server was only slow: it renews between the sweeper's read and its close.
    with Session(engine) as session:
        session.exec(update(Call).where(Call.id == start.call_id)
                     .values(lease_expires_at=now + timedelta(seconds=30)))
        session.commit()
    with Session(engine) as session:
        assert not close_call(session, row, EndReason.SERVER_LOST, "", row.last_seen_at,
                              price=lambda model, seconds: 0.0, lease_ran_out_before=now)
        session.commit()
    assert get_call(engine, start.call_id).ended_at is None


async def test_a_final_carrier_status_closes_a_lost_call_as_server_lost(
    engine: Engine,
) -> None:
    start = await _recorded_then_died(engine, PER_MINUTE_MODEL)
    connected = get_call(engine, start.call_id).model_connected_at
    seen = connected + timedelta(seconds=30)
    _expire(engine, start.call_id, seen=seen)

    other_process = CallWriter(engine, catalog=load_catalog())
    other_process.start()
    other_process.close_by_carrier_id(start.carrier_call_id, EndReason.COMPLETED)
    await other_process.stop()

    after = get_call(engine, start.call_id)
    assert (after.end_reason, after.ended_at, after.audio_seconds) == ("server_lost", seen, 30.0)
    assert after.output_audio_tokens == 1000


async def test_a_final_carrier_status_for_a_call_still_leased_closes_it_completed(
    engine: Engine,
) -> None:
    start = await _recorded_then_died(engine, "openai/gpt-realtime")
    other_process = CallWriter(engine)
    other_process.start()
    other_process.close_by_carrier_id(start.carrier_call_id, EndReason.COMPLETED)
    await other_process.stop()
    assert get_call(engine, start.call_id).end_reason == "completed"
