"""Closing a call's record: the figures a close writes, in one conditional UPDATE.

Shared by the writer (a call this process ends, the carrier's final status) and
the lost-call sweeper (a call whose server died), so every way a call ends
computes duration, model-session seconds and the per-time cost alike.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, select

from agentplatform.records import EndReason
from agentplatform.storage.models import Call, CallEvent, CallStatus, ToolInvocation, Turn

# What ``close_call`` needs of a row; select these.
CLOSE_COLUMNS = (Call.id, Call.started_at, Call.model, Call.ended_at, Call.model_connected_at,
                 Call.lease_expires_at, Call.last_seen_at)

# (model, model-session seconds) -> USD for the per-time part of the bill.
PriceSeconds = Callable[[str, float], float]


def close_call(
    session: Session, row: Any, reason: EndReason, detail: str, at: datetime, *,
    price: PriceSeconds, lease_ran_out_before: datetime | None = None,
) -> bool:
    """Close ``row`` as ended at ``at``; False if it was closed already.

    ``ended_at IS NULL`` in the UPDATE keeps the first reason when two processes
    close one call at once. With ``lease_ran_out_before``, the call is closed only
    if its lease still ran out before then: a server that renewed it meanwhile is
    alive, and keeps its call.
    """
    duration = max((at - row.started_at).total_seconds(), 0.0)
    # Per-time billing runs while a model session was open: never for a call
    # refused before one opened.
    connected = row.model_connected_at
    audio_seconds = max((at - connected).total_seconds(), 0.0) if connected else 0.0
    conditions = [Call.id == row.id, Call.ended_at.is_(None)]
    if lease_ran_out_before is not None:
        conditions.append(Call.lease_expires_at < lease_ran_out_before)
    result = session.exec(update(Call).where(*conditions).values(  # type: ignore[call-overload]
        ended_at=at, end_reason=str(reason), end_detail=detail, duration_seconds=duration,
        audio_seconds=audio_seconds, cost_usd=Call.cost_usd + price(row.model, audio_seconds),
        lease_expires_at=None, status=CallStatus.ENDED,
    ))
    return bool(result.rowcount == 1)


def lost_at(session: Session, row: Any) -> datetime:
    """When a call whose server died ended, as far as anyone can tell: the later of
    the last lease renewal and the last turn, tool call or event recorded on it
    (never before it started)."""
    latest = [row.started_at, row.last_seen_at]
    for table in (Turn, ToolInvocation, CallEvent):
        latest.append(session.exec(select(func.max(table.created_at))
                                   .where(table.call_id == row.id)).one())
    return max(t for t in latest if t is not None)


def lease_ran_out(row: Any, now: datetime) -> bool:
    return row.lease_expires_at is not None and row.lease_expires_at < now
