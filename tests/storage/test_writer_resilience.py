"""The writer through a database outage: nothing lost, nothing blocked, memory bounded."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event

from agentplatform.realtime.base import Usage
from agentplatform.records import CallStart, EndReason
from agentplatform.storage.database import create_tables, make_engine
from agentplatform.storage.queries import get_call
from agentplatform.storage.writer import CallWriter

PG_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


def _start(call_id: str | None = None) -> CallStart:
    call_id = call_id or uuid.uuid4().hex
    return CallStart(call_id=call_id, carrier_call_id="CA" + call_id, agent="front-desk",
                     model="openai/gpt-realtime", carrier="twilio",
                     from_number="+15550001111")


class Outage:
    """Every statement fails as if the database file or server were gone, until lifted."""

    def __init__(self, engine: Engine) -> None:
        self.down = False
        self.refused = 0
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *args: Any) -> None:
        if self.down:
            self.refused += 1
            raise sqlite3.OperationalError("unable to open database file")


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_records_made_while_the_database_is_down_are_written_when_it_returns(
    sqlite_engine: Engine,
) -> None:
    outage = Outage(sqlite_engine)
    writer = CallWriter(sqlite_engine, retry_first=0.01, retry_max=0.05)
    writer.start()
    try:
        outage.down = True
        start = _start()
        # The bridge keeps recording through the outage; every call returns at once
        # (none of these can have been written: every statement is being refused).
        writer.call_started(start)
        writer.model_served(start.call_id, "openai/gpt-realtime")
        writer.turn(start.call_id, "user", "hello?")
        writer.turn(start.call_id, "assistant", "Hi!", latency_ms=420.0, model_ms=390.0,
                    tool_ms=0.0)
        writer.usage(start.call_id, "openai/gpt-realtime", Usage(input_audio=100, output_audio=50))
        writer.event(start.call_id, "barge_in", {"heard_ms": 10})
        writer.call_ended(start.call_id, EndReason.CALLER_HUNG_UP)
        await _wait_for(lambda: writer.stats().retries >= 3)
        assert writer.stats().database_down
        assert writer.stats().applied == 0

        outage.down = False
        await writer.flush()
    finally:
        await writer.stop()
    stats = writer.stats()
    assert not stats.database_down and stats.failed == 0 and stats.dropped == 0
    detail = get_call(sqlite_engine, start.call_id)
    assert detail is not None and detail.end_reason == "caller_hung_up"
    assert [(t.role, t.text) for t in detail.turns] == [("user", "hello?"), ("assistant", "Hi!")]
    assert (detail.turns[1].latency_ms, detail.turns[1].model_ms) == (420.0, 390.0)
    assert detail.interruptions == 1 and detail.cost_usd > 0
    assert detail.model_connected_at is not None


async def test_a_bad_command_while_the_database_is_up_is_not_retried_forever(
    sqlite_engine: Engine,
) -> None:
    writer = CallWriter(sqlite_engine, retry_first=0.01)
    writer.start()
    try:
        start = _start()
        writer.call_started(start)
        writer.call_started(start)  # duplicate id: the command is at fault, not the database
        writer.turn(start.call_id, "user", "still recorded")
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.stats().failed == 1 and writer.stats().retries == 0
    detail = get_call(sqlite_engine, start.call_id)
    assert detail is not None and [t.text for t in detail.turns] == ["still recorded"]


async def test_past_its_bound_the_queue_sheds_events_then_turns_but_never_the_call_itself(
    sqlite_engine: Engine,
) -> None:
    writer = CallWriter(sqlite_engine, max_queue=4)  # not started: everything waits
    start = _start()
    writer.call_started(start)
    for i in range(6):
        writer.event(start.call_id, "noise", {"i": i})
    for i in range(8):
        writer.turn(start.call_id, "user", f"turn {i}")
    writer.usage(start.call_id, "openai/gpt-realtime", Usage(output_audio=1000))
    writer.call_ended(start.call_id, EndReason.CALLER_HUNG_UP)
    stats = writer.stats()
    # The start waits, then 3 events bring the queue to its bound of 4 (3 events shed);
    # turns go on to twice the bound, 8 (4 turns shed); usage and the end always queue.
    assert stats.dropped == 3 + 4
    assert stats.queued == 1 + 3 + 4 + 2
    writer.start()
    await writer.flush()
    await writer.stop()
    detail = get_call(sqlite_engine, start.call_id)
    assert detail is not None
    assert len(detail.events) == 3 and len(detail.turns) == 4
    assert detail.end_reason == "caller_hung_up" and detail.output_audio_tokens == 1000


async def test_postgres_connection_killed_under_the_writer_loses_no_record(
    postgres_engine: Engine,
) -> None:
    # Our own application name, so only this engine's connections are killed.
    app_name = f"writer-test-{uuid.uuid4().hex[:8]}"
    url = postgres_engine.url.render_as_string(hide_password=False)
    engine = make_engine(url, connect_args={"application_name": app_name})
    create_tables(engine)
    writer = CallWriter(engine, retry_first=0.01, retry_max=0.05)
    writer.start()
    try:
        first, second = _start(), _start()
        writer.call_started(first)
        await writer.flush()
        with psycopg.connect(PG_CONNINFO, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (app_name,)).fetchone()
        assert killed is not None and killed[0] >= 1
        writer.turn(first.call_id, "user", "after the kill")
        writer.call_started(second)
        writer.call_ended(first.call_id, EndReason.CALLER_HUNG_UP)
        writer.call_ended(second.call_id, EndReason.AGENT_ENDED)
        await writer.flush()
    finally:
        await writer.stop()
        engine.dispose()
    assert writer.stats().failed == 0
    one, two = get_call(postgres_engine, first.call_id), get_call(postgres_engine, second.call_id)
    assert one is not None and [t.text for t in one.turns] == ["after the kill"]
    assert one.end_reason == "caller_hung_up"
    assert two is not None and two.end_reason == "agent_ended"

