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
from enum import StrEnum
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


class CallStatus(StrEnum):
    """The ``status`` column: where a call is in its life."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"



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
    # ``inbound``, or ``outbound`` for a call the platform placed (``outbound/``).
    direction: str = Field(default="inbound", max_length=16)
    # Where the call is: ``queued`` (recorded, not yet dialed) → ``ringing`` →
    # ``in_progress`` (a conversation; an inbound call starts here) → ``ended``.
    status: str = Field(default=CallStatus.IN_PROGRESS.value, max_length=16)
    # An outbound call's answering-machine handling (``off``, ``hangup``,
    # ``leave_message``); empty for inbound calls.
    machine_detection: str = Field(default="", max_length=16)
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
    # ``latency_ms`` split by where it went: {"end_of_turn": 500, "stt": 120, …}, ms.
    latency_parts: dict[str, float] | None = Field(default=None, sa_type=JSON)
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


# ---------------------------------------------------------------- campaigns


class Campaign(SQLModel, table=True):
    """A list of numbers one agent calls (``agentplatform/campaigns/``). Pacing state
    (the token bucket) lives here too, so every process shares one rate."""

    id: str = Field(primary_key=True, max_length=32)  # uuid hex
    name: str = Field(max_length=200)
    agent: str = Field(index=True, max_length=64)
    carrier: str = Field(max_length=32)
    from_number: str = Field(default="", max_length=64)
    machine_detection: str = Field(default="off", max_length=16)
    voicemail_message: str = ""
    hours_start: str = Field(default="09:00", max_length=5)  # callee's wall clock, HH:MM
    hours_end: str = Field(default="20:00", max_length=5)
    default_time_zone: str = Field(default="UTC", max_length=64)
    calls_per_second: float = 1.0
    max_concurrent: int = 1
    max_attempts: int = 3
    retry_backoff_seconds: int = 600
    status: str = Field(default="draft", index=True, max_length=16)
    # Why the platform paused or is holding the campaign (no agent, no carrier, the
    # budget spent), shown on its page; empty otherwise.
    status_detail: str = ""
    hold_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    bucket_tokens: float | None = None
    bucket_filled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Bumped by every claim: updating the row first serializes claims across processes.
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CampaignContact(SQLModel, table=True):
    """One number of a campaign and where it stands: ``pending`` (to call, from
    ``next_attempt_at``), ``dialing`` (claimed by one process, then on the line),
    ``done`` (reached) or ``failed`` (out of attempts, or not retryable)."""

    __tablename__ = "campaign_contact"
    __table_args__ = (
        UniqueConstraint("campaign_id", "number", name="uq_campaign_contact_number"),
        Index("ix_campaign_contact_due", "campaign_id", "status", "next_attempt_at"),
        # Every tick looks for contacts on the line, across campaigns.
        Index("ix_campaign_contact_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", max_length=32)
    line: int = 0  # where it stood in the upload
    number: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    time_zone: str = Field(default="UTC", max_length=64)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_outcome: str | None = Field(default=None, max_length=32)
    last_detail: str = ""
    call_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    current_call_id: str | None = Field(default=None, index=True, max_length=32)
    # A claim: which process holds it, under which token, until when (then recovered).
    claim_token: str | None = Field(default=None, max_length=32)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dial_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
