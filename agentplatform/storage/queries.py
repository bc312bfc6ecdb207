"""Reading call records back, for the REST API and the admin screens.

Plain synchronous functions over an engine, each in its own short session, that
return ``*Public`` read models rather than live rows: a caller can keep and
serialize the result after the session is gone. (Async route handlers should run
them in a worker thread; FastAPI does that for plain ``def`` routes.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, case, func, literal_column
from sqlmodel import Session, col, select

from agentplatform.records import REFUSED_REASONS
from agentplatform.storage.models import (
    AgentDay,
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


def _filtered(
    statement, *, agent: str | None = None, end_reason: str | None = None,
    number: str | None = None, since: datetime | None = None, until: datetime | None = None,
):
    """The calls-list filters, shared by the page and its count."""
    if agent:
        statement = statement.where(Call.agent == agent)
    if end_reason == "live":
        statement = statement.where(col(Call.end_reason).is_(None))
    elif end_reason:
        statement = statement.where(Call.end_reason == end_reason)
    if number:
        statement = statement.where((Call.from_number == number) | (Call.to_number == number))
    if since is not None:
        statement = statement.where(Call.started_at >= since)
    if until is not None:
        statement = statement.where(Call.started_at < until)
    return statement


def list_calls(
    engine: Engine, limit: int = 50, offset: int = 0, agent: str | None = None, *,
    end_reason: str | None = None, number: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> list[CallPublic]:
    """Calls, newest first; ``limit`` is capped at ``MAX_PAGE``. ``end_reason="live"``
    selects calls still in progress; ``number`` matches either end of the call."""
    limit = max(0, min(limit, MAX_PAGE))
    statement = _filtered(select(Call), agent=agent, end_reason=end_reason, number=number,
                          since=since, until=until)
    statement = (
        statement.order_by(col(Call.started_at).desc(), col(Call.id).desc())
        .offset(max(offset, 0)).limit(limit)
    )
    with Session(engine) as session:
        return [CallPublic.model_validate(c) for c in session.exec(statement).all()]


def count_calls(
    engine: Engine, agent: str | None = None, *, end_reason: str | None = None,
    number: str | None = None, since: datetime | None = None, until: datetime | None = None,
) -> int:
    """How many calls ``list_calls`` can page through (for a pager's total)."""
    statement = _filtered(select(func.count()).select_from(Call), agent=agent,
                          end_reason=end_reason, number=number, since=since, until=until)
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


# ---------------------------------------------------------------- spend


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants a calendar day starts and ends at (budgets count UTC days)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def cost_on_day(engine: Engine, day: date, agent: str | None = None) -> float:
    """USD spent on calls that started on ``day`` (UTC), for one agent or all.

    Calls still in progress count with what they have cost so far (usage is priced
    as each response completes), which is what a budget check needs."""
    start, end = day_bounds(day)
    statement = select(func.coalesce(func.sum(Call.cost_usd), 0.0)).where(
        Call.started_at >= start, Call.started_at < end)
    if agent is not None:
        statement = statement.where(Call.agent == agent)
    with Session(engine) as session:
        return float(session.exec(statement).one())


def _utc_day_column(engine: Engine):
    """``YYYY-MM-DD`` of ``call.started_at`` in UTC, as this database spells it."""
    if engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Call.started_at), "YYYY-MM-DD")
    return func.substr(Call.started_at, 1, 10)  # SQLite keeps UTC text, ISO order


def agent_days(
    engine: Engine, since: date, until: date, agent: str | None = None,
) -> list[AgentDay]:
    """Calls, refusals, cost, model-session seconds and tokens per agent per UTC day,
    for ``since`` ≤ day ≤ ``until``, ordered by agent then day. Days with no calls
    are absent (a chart fills them with zeros)."""
    start, _ = day_bounds(since)
    _, end = day_bounds(until)
    day = _utc_day_column(engine).label("day")
    refused = case((col(Call.end_reason).in_([str(r) for r in REFUSED_REASONS]), 1), else_=0)
    statement = (
        select(Call.agent, day, func.count().label("n"), func.sum(refused).label("refused"),
               func.coalesce(func.sum(Call.cost_usd), 0.0).label("cost"),
               func.coalesce(func.sum(Call.audio_seconds), 0.0).label("seconds"),
               func.coalesce(func.sum(Call.input_text_tokens + Call.input_audio_tokens), 0)
               .label("tokens_in"),
               func.coalesce(func.sum(Call.output_text_tokens + Call.output_audio_tokens), 0)
               .label("tokens_out"))
        .where(Call.started_at >= start, Call.started_at < end)
        .group_by(Call.agent, literal_column("day"))
        .order_by(Call.agent, literal_column("day"))
    )
    if agent is not None:
        statement = statement.where(Call.agent == agent)
    with Session(engine) as session:
        return [
            AgentDay(agent=r.agent, day=str(r.day), calls=int(r.n) - int(r.refused or 0),
                     refused=int(r.refused or 0), cost_usd=float(r.cost),
                     audio_seconds=float(r.seconds), input_tokens=int(r.tokens_in),
                     output_tokens=int(r.tokens_out))
            for r in session.exec(statement)
        ]
