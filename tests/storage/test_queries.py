from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from agentplatform.storage.models import Call, CallEvent, ToolInvocation, Turn
from agentplatform.storage.queries import count_calls, find_by_carrier_id, get_call, list_calls

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


def _seed(engine: Engine) -> None:
    """Five calls a minute apart: c0 oldest … c4 newest; c1 and c3 on agent 'sales'."""
    with Session(engine) as session:
        for i in range(5):
            session.add(Call(
                id=f"c{i}", carrier_call_id="CA-repeat" if i in (0, 2) else f"CA{i}",
                agent="sales" if i % 2 else "desk", model="m", requested_model="m",
                started_at=T0 + timedelta(minutes=i),
            ))
        session.flush()
        # Inserted out of order on purpose: the transcript is ordered by seq.
        for seq, text in ((2, "second"), (1, "first"), (3, "third")):
            session.add(Turn(call_id="c2", seq=seq, role="user", text=text, created_at=T0))
        session.add(ToolInvocation(call_id="c2", name="a", arguments="{}", result="1", ok=True,
                                   duration_ms=1.0, created_at=T0))
        session.add(ToolInvocation(call_id="c2", name="b", arguments="{}", result="", ok=False,
                                   duration_ms=2.0, created_at=T0))
        session.add(CallEvent(call_id="c2", kind="greeting", created_at=T0))
        session.add(CallEvent(call_id="c2", kind="barge_in", detail={"ms": 5}, created_at=T0))
        session.add(Turn(call_id="c3", seq=1, role="user", text="other call", created_at=T0))
        session.commit()


def test_list_calls_pages_newest_first(engine: Engine) -> None:
    _seed(engine)
    assert [c.id for c in list_calls(engine, limit=2)] == ["c4", "c3"]
    assert [c.id for c in list_calls(engine, limit=2, offset=2)] == ["c2", "c1"]
    assert [c.id for c in list_calls(engine, limit=10, offset=4)] == ["c0"]


def test_list_calls_filters_by_agent(engine: Engine) -> None:
    _seed(engine)
    assert [c.id for c in list_calls(engine, limit=10, agent="sales")] == ["c3", "c1"]
    assert count_calls(engine, agent="sales") == 2
    assert count_calls(engine) == 5
    assert list_calls(engine, agent="nobody") == []


def test_get_call_returns_everything_in_order(engine: Engine) -> None:
    _seed(engine)
    detail = get_call(engine, "c2")
    assert detail is not None
    assert detail.id == "c2" and detail.started_at == T0 + timedelta(minutes=2)
    assert [t.text for t in detail.turns] == ["first", "second", "third"]
    assert [(t.name, t.ok) for t in detail.tools] == [("a", True), ("b", False)]
    assert [(e.kind, e.detail) for e in detail.events] == [("greeting", {}), ("barge_in", {"ms": 5})]


def test_get_unknown_call_is_none(engine: Engine) -> None:
    _seed(engine)
    assert get_call(engine, "nope") is None


def test_find_by_carrier_id_returns_the_latest_call(engine: Engine) -> None:
    _seed(engine)
    found = find_by_carrier_id(engine, "CA-repeat")
    assert found is not None and found.id == "c2"
    assert find_by_carrier_id(engine, "CA-unknown") is None
