from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import StatementError
from sqlmodel import Session

from agentplatform.storage.models import Call, CallDetail, CallPublic, Turn, TurnPublic


def _call(call_id: str, **kw: object) -> Call:
    return Call(id=call_id, carrier_call_id="CA1", agent="desk", model="m",
                requested_model="m", **kw)


def test_times_come_back_as_aware_utc(engine: Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    started = datetime(2025, 3, 1, 12, 0, 0, 500, tzinfo=plus_two)
    with Session(engine) as session:
        session.add(_call("a" * 32, started_at=started))
        session.commit()
    with Session(engine) as session:
        call = session.get(Call, "a" * 32)
        assert call is not None
        assert call.started_at == started
        assert call.started_at.utcoffset() == timedelta(0)
        assert call.started_at.hour == 10


def test_naive_time_is_refused(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        session.add(_call("b" * 32, started_at=datetime(2025, 3, 1, 12, 0)))
        with pytest.raises(StatementError, match="naive"):
            session.commit()


def test_new_call_defaults_to_open_with_zero_usage(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        session.add(_call("c" * 32))
        session.commit()
        call = session.get(Call, "c" * 32)
        assert call is not None
        public = CallPublic.model_validate(call)
    assert public.ended_at is None and public.end_reason is None
    assert public.started_at.tzinfo is not None
    assert (public.cost_usd, public.output_audio_tokens, public.parameters) == (0.0, 0, {})


def test_turn_seq_is_unique_within_a_call(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        session.add(_call("d" * 32))
        session.add(Turn(call_id="d" * 32, seq=1, role="user", text="x"))
        session.add(Turn(call_id="d" * 32, seq=1, role="user", text="y"))
        with pytest.raises(Exception, match="UNIQUE"):
            session.commit()


def test_turn_needs_an_existing_call(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        session.add(Turn(call_id="e" * 32, seq=1, role="user", text="x"))
        with pytest.raises(Exception, match="FOREIGN KEY"):
            session.commit()


def test_call_detail_serializes_with_its_turns() -> None:
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    detail = CallDetail(
        id="f" * 32, carrier_call_id="CA9", agent="desk", model="m", requested_model="m",
        started_at=when,
        turns=[TurnPublic(id=1, call_id="f" * 32, seq=1, role="user", text="hi",
                          created_at=when)],
    )
    data = detail.model_dump(mode="json")
    assert data["turns"][0]["text"] == "hi"
    assert data["started_at"].startswith("2025-01-01T00:00:00")
    assert data["tools"] == [] and data["events"] == []
