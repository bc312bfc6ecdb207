"""Reading call records back, for the REST API and the admin screens.

Plain synchronous functions over an engine, each in its own short session, that
return ``*Public`` read models rather than live rows: a caller can keep and
serialize the result after the session is gone. (Async route handlers should run
them in a worker thread; FastAPI does that for plain ``def`` routes.)
"""

from __future__ import annotations

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from agentplatform.storage.models import (
    Call,
    CallDetail,
    CallEvent,
    CallEventPublic,
    CallPublic,
    ToolInvocation,
    ToolInvocationPublic,
    Turn,
    TurnPublic,
)

MAX_PAGE = 500


def list_calls(
    engine: Engine, limit: int = 50, offset: int = 0, agent: str | None = None
) -> list[CallPublic]:
    """Calls, newest first; ``limit`` is capped at ``MAX_PAGE``."""
    limit = max(0, min(limit, MAX_PAGE))
    statement = select(Call)
    if agent is not None:
        statement = statement.where(Call.agent == agent)
    statement = (
        statement.order_by(col(Call.started_at).desc(), col(Call.id).desc())
        .offset(max(offset, 0)).limit(limit)
    )
    with Session(engine) as session:
        return [CallPublic.model_validate(c) for c in session.exec(statement).all()]


def count_calls(engine: Engine, agent: str | None = None) -> int:
    """How many calls ``list_calls`` can page through (for a pager's total)."""
    statement = select(func.count()).select_from(Call)
    if agent is not None:
        statement = statement.where(Call.agent == agent)
    with Session(engine) as session:
        return session.exec(statement).one()


def get_call(engine: Engine, call_id: str) -> CallDetail | None:
    """One call with its transcript (by seq), tool invocations and events (as written)."""
    with Session(engine) as session:
        call = session.get(Call, call_id)
        if call is None:
            return None
        turns = session.exec(
            select(Turn).where(Turn.call_id == call_id).order_by(col(Turn.seq))
        ).all()
        tools = session.exec(
            select(ToolInvocation).where(ToolInvocation.call_id == call_id)
            .order_by(col(ToolInvocation.id))
        ).all()
        events = session.exec(
            select(CallEvent).where(CallEvent.call_id == call_id).order_by(col(CallEvent.id))
        ).all()
        return CallDetail(
            **CallPublic.model_validate(call).model_dump(),
            turns=[TurnPublic.model_validate(t) for t in turns],
            tools=[ToolInvocationPublic.model_validate(t) for t in tools],
            events=[CallEventPublic.model_validate(e) for e in events],
        )


def find_by_carrier_id(engine: Engine, carrier_call_id: str) -> CallPublic | None:
    """The most recent call the carrier knows by ``carrier_call_id`` (a Twilio CallSid)."""
    statement = (
        select(Call).where(Call.carrier_call_id == carrier_call_id)
        .order_by(col(Call.started_at).desc()).limit(1)
    )
    with Session(engine) as session:
        call = session.exec(statement).first()
        return CallPublic.model_validate(call) if call is not None else None
