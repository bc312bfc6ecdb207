from __future__ import annotations

import inspect
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, update
from sqlmodel import Session

from agentplatform.catalog import load_catalog
from agentplatform.realtime.base import Usage
from agentplatform.records import CallRecorder, CallStart, EndReason
from agentplatform.storage.models import Call, CallEvent
from agentplatform.storage.queries import find_by_carrier_id, get_call
from agentplatform.storage.writer import CallWriter


def _start(agent: str = "front-desk", model: str = "openai/gpt-realtime", **kw: Any) -> CallStart:
    call_id = uuid.uuid4().hex
    return CallStart(call_id=call_id, carrier_call_id=kw.pop("carrier_call_id", "CA" + call_id),
                     agent=agent, model=model, carrier=kw.pop("carrier", "twilio"),
                     from_number="+15550001111",
                     to_number="+15550002222", **kw)


def test_call_writer_has_every_call_recorder_method_with_its_parameters() -> None:
    port_methods = [n for n in vars(CallRecorder) if not n.startswith("_")]
    assert port_methods
    for name in port_methods:
        expected = list(inspect.signature(getattr(CallRecorder, name)).parameters)
        assert list(inspect.signature(getattr(CallWriter, name)).parameters) == expected, name


async def test_recording_returns_before_the_slow_database_write_is_done(
    sqlite_engine: Engine,
) -> None:
    # Every INSERT stalls until the test opens the gate: a database as slow as we like.
    gate, stalled = threading.Event(), threading.Event()

    def slow_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            stalled.set()
            gate.wait(timeout=10)

    event.listen(sqlite_engine, "before_cursor_execute", slow_insert)
    writer = CallWriter(sqlite_engine)
    writer.start()
    try:
        start = _start()
        writer.call_started(start)
        writer.turn(start.call_id, "user", "hello?")
        writer.event(start.call_id, "greeting_sent")
        writer.usage(start.call_id, start.model, Usage(input_audio=10))
        writer.call_ended(start.call_id, EndReason.CALLER_HUNG_UP)

        # All five returned while the writer is still stuck inside the first INSERT.
        assert stalled.wait(timeout=5)
        assert find_by_carrier_id(sqlite_engine, start.carrier_call_id) is None
        assert writer.stats().applied == 0

        gate.set()
        await writer.flush()
        detail = get_call(sqlite_engine, start.call_id)
        assert detail is not None
        assert detail.end_reason == "caller_hung_up"
        assert [t.text for t in detail.turns] == ["hello?"]
    finally:
        gate.set()
        await writer.stop()


async def test_full_lifecycle_closes_row_with_reason_and_turns_in_order(
    engine: Engine, writer: CallWriter,
) -> None:
    start = _start(parameters={"campaign": "spring"})
    writer.call_started(start)
    writer.model_served(start.call_id, "openai/gpt-realtime-mini")
    texts = [f"turn {i}" for i in range(40)]
    for i, text in enumerate(texts):
        writer.turn(start.call_id, "user" if i % 2 == 0 else "assistant", text,
                    interrupted=(i == 5), latency_ms=(120.5 if i % 2 else None))
    writer.tool_invocation(start.call_id, "lookup", '{"q": 1}', '{"a": 2}', ok=True,
                           duration_ms=31.0)
    writer.event(start.call_id, "barge_in", {"audio_end_ms": 640})
    writer.usage(start.call_id, "openai/gpt-realtime-mini", Usage(input_text=10, input_audio=100))
    writer.usage(start.call_id, "openai/gpt-realtime-mini", Usage(output_audio=300, input_cached=5))
    writer.call_ended(start.call_id, EndReason.AGENT_ENDED, "said goodbye")
    await writer.flush()

    detail = get_call(engine, start.call_id)
    assert detail is not None
    assert detail.end_reason == "agent_ended"
    assert detail.end_detail == "said goodbye"
    assert detail.ended_at is not None and detail.ended_at.tzinfo is not None
    assert detail.started_at.utcoffset() == timedelta(0)
    assert detail.ended_at >= detail.started_at
    assert detail.duration_seconds == pytest.approx(
        (detail.ended_at - detail.started_at).total_seconds()
    )
    assert (detail.requested_model, detail.model) == (
        "openai/gpt-realtime", "openai/gpt-realtime-mini")
    assert detail.parameters == {"campaign": "spring"}
    assert [t.text for t in detail.turns] == texts
    assert [t.seq for t in detail.turns] == list(range(1, 41))
    assert [t.interrupted for t in detail.turns].index(True) == 5
    assert detail.turns[1].latency_ms == 120.5 and detail.turns[0].latency_ms is None
    assert [(t.name, t.ok, t.result) for t in detail.tools] == [("lookup", True, '{"a": 2}')]
    assert [(e.kind, e.detail) for e in detail.events] == [("barge_in", {"audio_end_ms": 640})]
    assert (detail.input_text_tokens, detail.input_audio_tokens, detail.input_cached_tokens,
            detail.output_audio_tokens) == (10, 100, 5, 300)


async def test_usage_accumulates_tokens_and_cost_from_the_catalog(
    engine: Engine, writer: CallWriter,
) -> None:
    p = load_catalog().model("openai/gpt-realtime").prices
    start = _start()
    writer.call_started(start)
    writer.usage(start.call_id, start.model, Usage(input_audio=2000, output_audio=1000))
    writer.usage(start.call_id, start.model, Usage(input_text=400, input_audio=1600,
                                                   input_cached=500, output_text=50))
    await writer.flush()

    # Second report: 500 cached of 2000 input -> 100 text, 400 audio at the cached rates.
    expected = (
        2000 * p["audio_in"] + 1000 * p["audio_out"]
        + 300 * p["text_in"] + 100 * p["text_cached"]
        + 1200 * p["audio_in"] + 400 * p["audio_cached"] + 50 * p["text_out"]
    ) / 1_000_000
    call = find_by_carrier_id(engine, start.carrier_call_id)
    assert call is not None
    assert call.cost_usd == pytest.approx(expected)
    assert (call.input_audio_tokens, call.input_text_tokens, call.output_audio_tokens) == (
        3600, 400, 1000)


async def test_per_minute_model_is_billed_for_the_model_session_seconds_at_close(
    engine: Engine, writer: CallWriter,
) -> None:
    rate = load_catalog().model("xai/grok-voice").prices["per_minute"]
    start = _start(model="xai/grok-voice")
    writer.call_started(start)
    writer.model_served(start.call_id, "xai/grok-voice")
    await writer.flush()
    with Session(engine) as session:  # the call rang 3 minutes ago; the model answered at 2
        session.exec(update(Call).where(Call.id == start.call_id).values(
            started_at=datetime.now(UTC) - timedelta(minutes=3),
            model_connected_at=datetime.now(UTC) - timedelta(minutes=2)))
        session.commit()
    writer.call_ended(start.call_id, EndReason.CALLER_HUNG_UP)
    await writer.flush()

    call = find_by_carrier_id(engine, start.carrier_call_id)
    assert call is not None and call.duration_seconds is not None
    assert call.duration_seconds >= 180
    assert 120 <= call.audio_seconds < call.duration_seconds
    assert call.cost_usd == pytest.approx(call.audio_seconds / 60 * rate)


async def test_a_call_refused_before_any_model_session_costs_nothing(
    engine: Engine, writer: CallWriter,
) -> None:
    start = _start(model="xai/grok-voice")
    writer.call_started(start)
    await writer.flush()
    with Session(engine) as session:
        session.exec(update(Call).where(Call.id == start.call_id).values(
            started_at=datetime.now(UTC) - timedelta(minutes=2)))
        session.commit()
    writer.call_ended(start.call_id, EndReason.BUSY, "max_concurrent_calls 1 reached")
    await writer.flush()

    call = find_by_carrier_id(engine, start.carrier_call_id)
    assert call is not None
    assert call.end_reason == "busy" and call.duration_seconds >= 120
    assert call.audio_seconds == 0.0 and call.cost_usd == 0.0


async def test_second_call_ended_keeps_the_first_reason(
    engine: Engine, writer: CallWriter,
) -> None:
    start = _start()
    writer.call_started(start)
    writer.call_ended(start.call_id, EndReason.TRANSFERRED, "to sales")
    writer.call_ended(start.call_id, EndReason.PROVIDER_ERROR, "same batch")
    await writer.flush()
    first = find_by_carrier_id(engine, start.carrier_call_id)
    writer.call_ended(start.call_id, EndReason.CARRIER_ERROR, "later batch")
    writer.close_by_carrier_id(start.carrier_call_id, EndReason.COMPLETED)
    await writer.flush()

    call = find_by_carrier_id(engine, start.carrier_call_id)
    assert first is not None and call is not None
    assert (call.end_reason, call.end_detail) == ("transferred", "to sales")
    assert call.ended_at == first.ended_at


async def test_close_by_carrier_id_closes_the_call_only_if_still_open(
    engine: Engine, writer: CallWriter,
) -> None:
    open_call, closed_call = _start(), _start()
    writer.call_started(open_call)
    writer.call_started(closed_call)
    writer.call_ended(closed_call.call_id, EndReason.CALLER_HUNG_UP)
    writer.close_by_carrier_id(open_call.carrier_call_id, EndReason.COMPLETED)
    writer.close_by_carrier_id(closed_call.carrier_call_id, EndReason.COMPLETED)
    writer.close_by_carrier_id("CA-never-seen", EndReason.COMPLETED)
    await writer.flush()

    reopened = find_by_carrier_id(engine, open_call.carrier_call_id)
    untouched = find_by_carrier_id(engine, closed_call.carrier_call_id)
    assert reopened is not None and untouched is not None
    assert reopened.end_reason == "completed" and reopened.ended_at is not None
    assert untouched.end_reason == "caller_hung_up"


async def test_close_open_calls_closes_only_this_writers_open_calls(engine: Engine) -> None:
    ours, other = CallWriter(engine), CallWriter(engine)  # two processes' writers
    ours.start()
    other.start()
    try:
        open_here, ended_here, open_elsewhere = _start(), _start(), _start()
        ours.call_started(open_here)
        ours.call_started(ended_here)
        ours.call_ended(ended_here.call_id, EndReason.LIMIT_REACHED)
        other.call_started(open_elsewhere)
        await other.flush()

        ours.close_open_calls(EndReason.SERVER_SHUTDOWN)
        assert await ours.stop()  # stop drains the queue

        def reason(s: CallStart) -> str | None:
            call = find_by_carrier_id(engine, s.carrier_call_id)
            assert call is not None
            return call.end_reason

        assert reason(open_here) == "server_shutdown"
        assert reason(ended_here) == "limit_reached"
        assert reason(open_elsewhere) is None
    finally:
        await ours.stop()
        await other.stop()


async def test_commands_queued_before_start_are_written_by_stop(sqlite_engine: Engine) -> None:
    writer = CallWriter(sqlite_engine)
    start = _start()
    writer.call_started(start)
    writer.turn(start.call_id, "assistant", "Hi, how can I help?")

    assert await writer.stop()

    detail = get_call(sqlite_engine, start.call_id)
    assert detail is not None and [t.text for t in detail.turns] == ["Hi, how can I help?"]


async def test_closed_writer_drops_commands_without_raising(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture,
) -> None:
    writer = CallWriter(sqlite_engine)
    writer.start()
    await writer.stop()

    start = _start()
    writer.call_started(start)

    assert "dropped" in caplog.text
    assert find_by_carrier_id(sqlite_engine, start.carrier_call_id) is None
    with pytest.raises(RuntimeError):
        await writer.flush()


async def test_database_error_is_logged_and_the_writer_keeps_going(
    engine: Engine, writer: CallWriter, caplog: pytest.LogCaptureFixture,
) -> None:
    first = _start()
    writer.call_started(first)
    await writer.flush()
    CallEvent.__table__.drop(engine)  # type: ignore[attr-defined]

    writer.turn(first.call_id, "user", "one")
    writer.event(first.call_id, "doomed")
    writer.turn(first.call_id, "assistant", "two")
    writer.call_ended(first.call_id, EndReason.CALLER_HUNG_UP)
    with caplog.at_level(logging.ERROR, logger="agentplatform.storage.writer"):
        await writer.flush()

    assert any("_EventAdded" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert writer.stats().failed == 1
    # The table is back (empty): reads work, the next call is whole.
    CallEvent.__table__.create(engine)  # type: ignore[attr-defined]
    detail = get_call(engine, first.call_id)
    assert detail is not None
    assert [(t.seq, t.text) for t in detail.turns] == [(1, "one"), (2, "two")]
    assert detail.end_reason == "caller_hung_up"

    second = _start()
    writer.call_started(second)
    writer.turn(second.call_id, "user", "again")
    writer.event(second.call_id, "recovered")
    writer.call_ended(second.call_id, EndReason.COMPLETED)
    await writer.flush()
    again = get_call(engine, second.call_id)
    assert again is not None
    assert [e.kind for e in again.events] == ["recovered"]
    assert again.end_reason == "completed"


async def test_failed_command_in_a_batch_loses_only_itself(sqlite_engine: Engine) -> None:
    CallEvent.__table__.drop(sqlite_engine)  # type: ignore[attr-defined]
    writer = CallWriter(sqlite_engine)
    start = _start()
    # Queued before start, so the thread takes them all as one batch.
    writer.call_started(start)
    writer.turn(start.call_id, "user", "a")
    writer.event(start.call_id, "doomed")
    writer.turn(start.call_id, "assistant", "b")
    writer.call_ended(start.call_id, EndReason.AGENT_ENDED)
    writer.start()
    await writer.flush()
    stats = writer.stats()
    await writer.stop()

    CallEvent.__table__.create(sqlite_engine)  # type: ignore[attr-defined]
    detail = get_call(sqlite_engine, start.call_id)
    assert detail is not None
    assert [(t.seq, t.text) for t in detail.turns] == [(1, "a"), (2, "b")]
    assert detail.end_reason == "agent_ended"
    assert (stats.applied, stats.failed) == (4, 1)


async def test_unknown_model_keeps_tokens_and_records_zero_cost(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture,
) -> None:
    writer = CallWriter(sqlite_engine)
    writer.start()
    start = _start(model="acme/unlisted")
    writer.call_started(start)
    writer.usage(start.call_id, "acme/unlisted", Usage(output_audio=99))
    writer.call_ended(start.call_id, EndReason.CALLER_HUNG_UP)
    await writer.stop()

    call = find_by_carrier_id(sqlite_engine, start.carrier_call_id)
    assert call is not None
    assert (call.output_audio_tokens, call.cost_usd, call.end_reason) == (
        99, 0.0, "caller_hung_up")
    assert "acme/unlisted" in caplog.text


async def test_turns_continue_their_seq_after_a_failed_batch(sqlite_engine: Engine) -> None:
    writer = CallWriter(sqlite_engine)
    writer.start()
    try:
        start = _start()
        writer.call_started(start)
        writer.turn(start.call_id, "user", "one")
        writer.turn(start.call_id, "user", "one", interrupted=True)
        writer.call_started(start)  # duplicate id: this command fails, its batch replays
        writer.turn(start.call_id, "assistant", "two")
        await writer.flush()
        writer.turn(start.call_id, "user", "three")
        await writer.flush()

        detail = get_call(sqlite_engine, start.call_id)
        assert detail is not None
        assert [t.seq for t in detail.turns] == [1, 2, 3, 4]
        assert [t.text for t in detail.turns][-2:] == ["two", "three"]
    finally:
        await writer.stop()
