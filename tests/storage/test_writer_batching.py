"""The writer gathers a burst of records into one transaction: every transaction is
milliseconds of Python holding the GIL that the calls' event loop waits for."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import Engine, event

from agentplatform.records import CallStart
from agentplatform.storage.writer import CallWriter


def _commits(engine: Engine) -> list[int]:
    seen: list[int] = []
    event.listen(engine, "commit", lambda conn: seen.append(1))
    return seen


@pytest.mark.parametrize(("linger", "most_commits"), [(0.3, 2), (0.0, 99)])
async def test_records_arriving_within_the_linger_share_one_transaction(
        sqlite_engine: Engine, linger: float, most_commits: int) -> None:
    writer = CallWriter(sqlite_engine, linger=linger)
    writer.start()
    call_id = uuid.uuid4().hex
    writer.call_started(CallStart(call_id=call_id, carrier_call_id="CA1", agent="a",
                                  model="openai/gpt-realtime", carrier="twilio"))
    await writer.flush()
    commits = _commits(sqlite_engine)
    for i in range(5):  # spaced out, as a call's events are
        writer.event(call_id, "barge_in", {"n": i})
        await asyncio.sleep(0.03)
    await writer.flush()
    await writer.stop()
    if linger:
        assert len(commits) <= most_commits
    else:
        assert len(commits) >= 4  # one each without the linger: what the linger saves


async def test_one_batch_of_several_calls_keeps_each_calls_rows_in_order_and_counts_its_barge_ins(
        engine: Engine) -> None:
    """Turns, events and tool calls are gathered per transaction and written as one
    INSERT per table: the calls they belong to (started in the same batch) come
    first, reads in the batch see the rows before them, and every barge-in counts."""
    from agentplatform.realtime.base import Usage
    from agentplatform.records import EndReason
    from agentplatform.storage.queries import get_call

    writer = CallWriter(engine, linger=0.0)
    ids = [uuid.uuid4().hex for _ in range(3)]
    # Queued before the thread starts: the thread takes them all as one batch.
    for n, call_id in enumerate(ids):
        writer.call_started(CallStart(call_id=call_id, carrier_call_id="CA" + call_id,
                                      agent="a", model="openai/gpt-realtime", carrier="twilio"))
        for i in range(n + 1):
            writer.turn(call_id, "assistant", f"answer {i}", interrupted=True,
                        parts={"model": 100.0 + i})
            writer.event(call_id, "barge_in", {"i": i})
            writer.tool_invocation(call_id, "lookup", "{}", f"result {i}", ok=True,
                                   duration_ms=1.0)
    writer.usage(ids[0], "openai/gpt-realtime", Usage(input_audio=10))
    writer.event(ids[0], "barge_in", {"i": 99})  # after an UPDATE in the same batch
    writer.turn(ids[0], "user", "last words")
    writer.call_ended(ids[0], EndReason.AGENT_ENDED)
    writer.start()
    await writer.flush()
    await writer.stop()

    for n, call_id in enumerate(ids):
        detail = get_call(engine, call_id)
        assert detail is not None
        expected_turns = [(i + 1, f"answer {i}") for i in range(n + 1)]
        expected_events = [{"i": i} for i in range(n + 1)]
        if n == 0:
            expected_turns.append((2, "last words"))
            expected_events.append({"i": 99})
        assert [(t.seq, t.text) for t in detail.turns] == expected_turns
        assert [e.detail for e in detail.events] == expected_events
        assert [t.result for t in detail.tools] == [f"result {i}" for i in range(n + 1)]
        assert detail.interruptions == len(expected_events)
    first = get_call(engine, ids[0])
    assert first is not None and first.end_reason == "agent_ended"
    assert first.input_audio_tokens == 10
    assert first.turns[0].latency_parts == {"model": 100.0}
