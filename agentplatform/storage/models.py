"""Call records: the tables, and the read models the API and admin screens return.

Layering follows the usual SQLModel shape: a ``*Base`` holds the columns both sides
share, the ``table=True`` class adds keys, and a ``*Public`` model is what leaves the
process (the API never hands out live ORM rows, which would lazily touch the
database after their session is gone).

Every timestamp is timezone-aware UTC. SQLite has no time-zone type, so
``UTCDateTime`` stores UTC there and hands back aware values on read; PostgreSQL
gets ``timestamptz``. Code comparing or subtracting times then never mixes naive
and aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime`` that only accepts aware values and always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time is ambiguous; refusing it here beats storing a wrong hour.
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# ---------------------------------------------------------------- calls


class CallBase(SQLModel):
    carrier_call_id: str = Field(index=True, max_length=128)
    carrier: str = Field(default="twilio", max_length=32)
    agent: str = Field(index=True, max_length=64)
    # The model that served the call (differs from requested_model after a fallback).
    model: str = Field(max_length=128)
    requested_model: str = Field(max_length=128)
    from_number: str = Field(default="", max_length=64)
    to_number: str = Field(default="", max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)
    end_detail: str = ""
    duration_seconds: float | None = None
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    # When a model session first answered; a refused call never has one. Per-time
    # billing (``per_minute`` prices) runs from here to ``ended_at``.
    model_connected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    audio_seconds: float = 0.0  # model-session seconds, the unit of per-time billing
    interruptions: int = 0  # times the caller talked over the agent
    cost_usd: float = 0.0


class Call(CallBase, table=True):
    # The listing screen pages newest first; budgets sum one agent's day.
    __table_args__ = (
        Index("ix_call_started_at", "started_at"),
        Index("ix_call_agent_started_at", "agent", "started_at"),
        Index("ix_call_lease_expires_at", "lease_expires_at"),
    )

    id: str = Field(primary_key=True, max_length=32)  # uuid hex, minted by the bridge
    # Liveness: the writer of the process serving an open call pushes the lease out
    # while the process lives. Still open with the lease run out, the call's server is
    # gone, and any process closes it as ``server_lost`` at ``last_seen_at``
    # (``storage/liveness.py``). Cleared when the call closes.
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CallPublic(CallBase):
    id: str


# ---------------------------------------------------------------- transcript turns


class TurnBase(SQLModel):
    seq: int  # 1, 2, 3… within one call; the transcript's order
    role: str = Field(max_length=16)
    text: str
    # The caller spoke over this answer; ``text`` is what they actually heard.
    interrupted: bool = False
    # Caller stopped speaking → first answer audio sent to the carrier (what the caller feels).
    latency_ms: float | None = None
    model_ms: float | None = None  # … → first answer audio received from the model
    tool_ms: float | None = None  # tool time inside that wait
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Turn(TurnBase, table=True):
    __table_args__ = (UniqueConstraint("call_id", "seq", name="uq_turn_call_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(foreign_key="call.id", index=True, max_length=32)


class TurnPublic(TurnBase):
    id: int
    call_id: str


# ---------------------------------------------------------------- tool invocations


class ToolInvocationBase(SQLModel):
    name: str = Field(max_length=64)
    arguments: str  # JSON text, as the model produced it
    result: str
    ok: bool
    duration_ms: float
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ToolInvocation(ToolInvocationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(foreign_key="call.id", index=True, max_length=32)


class ToolInvocationPublic(ToolInvocationBase):
    id: int
    call_id: str


# ---------------------------------------------------------------- call events


class CallEventBase(SQLModel):
    kind: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CallEvent(CallEventBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(foreign_key="call.id", index=True, max_length=32)


class CallEventPublic(CallEventBase):
    id: int
    call_id: str


# ---------------------------------------------------------------- one call, in full


class CallDetail(CallPublic):
    """A call with everything that happened on it, each list in the order it happened."""

    turns: list[TurnPublic] = Field(default_factory=list)
    tools: list[ToolInvocationPublic] = Field(default_factory=list)
    events: list[CallEventPublic] = Field(default_factory=list)


# ---------------------------------------------------------------- spend-control counters


class LimitScope(SQLModel, table=True):
    """One row per limit scope (``agent:front-desk``). Updating it first serializes
    slot checks for that scope across processes on SQLite and PostgreSQL alike."""

    scope: str = Field(primary_key=True, max_length=128)
    version: int = 0


class CallLease(SQLModel, table=True):
    """A concurrency slot held by one call until ``expires_at``; renewed while the call
    runs, so the slots of a process that died free themselves."""

    scope: str = Field(primary_key=True, max_length=128)
    holder: str = Field(primary_key=True, max_length=128)  # the carrier's call id
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class DailyCounter(SQLModel, table=True):
    """A per-day count (calls from one caller to one agent), bumped atomically."""

    key: str = Field(primary_key=True, max_length=200)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD, UTC
    count: int = 0


# ---------------------------------------------------------------- per agent per day


class AgentDay(SQLModel):
    """One agent's calls on one UTC day: what the daily cost chart and budgets read."""

    agent: str
    day: str  # YYYY-MM-DD
    calls: int
    refused: int
    cost_usd: float
    audio_seconds: float
    input_tokens: int
    output_tokens: int


# ---------------------------------------------------------------- single-use tokens


class UsedToken(SQLModel, table=True):
    """A token id that has been spent (``single_use.py``); kept until the token would
    have expired anyway, then purged."""

    __tablename__ = "used_tokens"

    token_id: str = Field(primary_key=True, max_length=128)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
