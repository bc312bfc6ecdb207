"""Spend sums the budgets and the daily cost chart read: per UTC day, per agent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from agentplatform.storage.models import Call
from agentplatform.storage.queries import (
    agent_days,
    cost_on_day,
    count_calls,
    day_bounds,
    list_calls,
)

DAY = date(2026, 3, 10)
MIDNIGHT = datetime(2026, 3, 10, tzinfo=UTC)


def _call(session: Session, i: int, agent: str, at: datetime, cost: float, *,
          reason: str | None = "caller_hung_up", seconds: float = 0.0, tokens: int = 0,
          from_number: str = "+15550000001") -> None:
    session.add(Call(id=f"c{i}", carrier_call_id=f"CA{i}", agent=agent, model="m",
                     requested_model="m", started_at=at, cost_usd=cost, end_reason=reason,
                     audio_seconds=seconds, input_audio_tokens=tokens, output_audio_tokens=tokens // 2,
                     from_number=from_number, to_number="+15559990000"))


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    with Session(engine) as session:
        _call(session, 1, "desk", MIDNIGHT - timedelta(seconds=1), 9.0)  # the day before
        _call(session, 2, "desk", MIDNIGHT, 0.25, seconds=60, tokens=1000)
        _call(session, 3, "desk", MIDNIGHT + timedelta(hours=23, minutes=59), 0.50, seconds=30,
              tokens=500, from_number="+15550000002")
        _call(session, 4, "desk", MIDNIGHT + timedelta(hours=2), 0.0, reason="busy")
        _call(session, 5, "sales", MIDNIGHT + timedelta(hours=3), 1.0, reason=None)  # live
        _call(session, 6, "sales", MIDNIGHT + timedelta(days=1), 2.0)  # the day after
        session.commit()
    return engine


def test_day_bounds_are_utc_midnights() -> None:
    assert day_bounds(DAY) == (MIDNIGHT, MIDNIGHT + timedelta(days=1))


def test_cost_on_day_sums_calls_started_that_utc_day_including_live_ones(seeded: Engine) -> None:
    assert cost_on_day(seeded, DAY, "desk") == pytest.approx(0.75)
    assert cost_on_day(seeded, DAY, "sales") == pytest.approx(1.0)
    assert cost_on_day(seeded, DAY) == pytest.approx(1.75)
    assert cost_on_day(seeded, DAY - timedelta(days=1)) == pytest.approx(9.0)
    assert cost_on_day(seeded, date(2020, 1, 1)) == 0.0


def test_agent_days_groups_per_agent_per_utc_day_and_counts_refusals(seeded: Engine) -> None:
    days = agent_days(seeded, DAY - timedelta(days=1), DAY + timedelta(days=1))
    got = {(d.agent, d.day): d for d in days}
    assert list(got) == [("desk", "2026-03-09"), ("desk", "2026-03-10"),
                         ("sales", "2026-03-10"), ("sales", "2026-03-11")]
    desk = got[("desk", "2026-03-10")]
    assert (desk.calls, desk.refused) == (2, 1)
    assert desk.cost_usd == pytest.approx(0.75)
    assert desk.audio_seconds == pytest.approx(90.0)
    assert (desk.input_tokens, desk.output_tokens) == (1500, 750)
    assert got[("sales", "2026-03-10")].calls == 1


def test_agent_days_can_be_narrowed_to_one_agent_and_range(seeded: Engine) -> None:
    days = agent_days(seeded, DAY, DAY, agent="sales")
    assert [(d.agent, d.day, d.cost_usd) for d in days] == [("sales", "2026-03-10", 1.0)]


def test_calls_list_filters_by_end_reason_live_number_and_days(seeded: Engine) -> None:
    assert [c.id for c in list_calls(seeded, end_reason="busy")] == ["c4"]
    assert [c.id for c in list_calls(seeded, end_reason="live")] == ["c5"]
    assert [c.id for c in list_calls(seeded, number="+15550000002")] == ["c3"]
    since, until = day_bounds(DAY)
    assert {c.id for c in list_calls(seeded, since=since, until=until)} == {"c2", "c3", "c4", "c5"}
    assert count_calls(seeded, agent="desk", since=since, until=until) == 3
