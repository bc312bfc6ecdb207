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
