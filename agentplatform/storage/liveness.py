"""Which open calls still have a live server, and closing those that do not.

A process serving calls keeps each one's ``lease_expires_at`` in the future: its
writer thread renews the leases of its open calls every third of a lease period
(``renew_leases``). Killed — SIGKILL, a power cut, an out-of-memory kill — it
stops, and after at most one lease period the calls it left open are visibly
orphaned. Whichever process notices first (every server sweeps at start-up and
then several times per lease period, ``keep_closing_lost_calls``) closes them as
``server_lost`` at the last time their server was seen, with the usage, transcript
and cost recorded until then.

Two sweepers, or a sweeper and a server that renews late, cannot both win: the
close is one UPDATE that still requires the call open and its lease run out.
Leases are judged by each server's own clock, so servers need synchronised
clocks (NTP), as the concurrency leases in ``limits/`` do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from agentplatform.catalog import Catalog
from agentplatform.errors import CatalogError
from agentplatform.realtime.base import Usage
from agentplatform.records import EndReason
from agentplatform.storage.closing import CLOSE_COLUMNS, close_call, lost_at
from agentplatform.storage.models import Call, utcnow
from agentplatform.storage.pricing import cost_usd

log = logging.getLogger(__name__)

_ID_CHUNK = 500  # ids per IN (...) clause
SWEEP_BATCH = 200  # lost calls closed per transaction
LOST_DETAIL = "its server stopped renewing the call's lease"


def renew_leases(session: Session, call_ids: Iterable[str], now: datetime,
                 lease: timedelta) -> None:
    """Push out the leases of ``call_ids`` (still open) and note ``now`` as last seen."""
    ids = sorted(call_ids)
    for i in range(0, len(ids), _ID_CHUNK):
        session.exec(update(Call).where(  # type: ignore[call-overload]
            Call.id.in_(ids[i:i + _ID_CHUNK]), Call.ended_at.is_(None),
        ).values(lease_expires_at=now + lease, last_seen_at=now))


def close_lost_calls(engine: Engine, *, catalog: Catalog | None = None,
                     now: datetime | None = None) -> list[str]:
    """Close every open call whose lease ran out before ``now``; returns their ids
    (only those this call closed, not those another process closed first)."""
    now = now or utcnow()
    closed: list[str] = []
    while True:
        with Session(engine) as session:
            rows = session.exec(
                select(*CLOSE_COLUMNS, Call.agent, Call.carrier_call_id)
                .where(Call.ended_at.is_(None), Call.lease_expires_at < now)  # type: ignore[union-attr, operator]
                .order_by(Call.lease_expires_at).limit(SWEEP_BATCH)
            ).all()
            for row in rows:
                at = lost_at(session, row)
                if close_call(session, row, EndReason.SERVER_LOST, LOST_DETAIL, at,
                              price=_pricer(catalog), lease_ran_out_before=now):
                    closed.append(row.id)
                    log.warning("call %s (%s, %s) closed as server_lost: its server was "
                                "last seen at %s", row.id, row.agent, row.carrier_call_id,
                                at.isoformat())
            session.commit()
        if len(rows) < SWEEP_BATCH:
            return closed


async def keep_closing_lost_calls(engine: Engine, *, catalog: Catalog | None,
                                  interval: float) -> None:
    """Sweep now, then every ``interval`` seconds until cancelled; the database work
    runs in a worker thread. A failed sweep is logged and tried again next time."""
    while True:
        try:
            await asyncio.to_thread(close_lost_calls, engine, catalog=catalog)
        except Exception as exc:
            log.warning("sweep for calls whose server was lost failed: %s", exc)
        await asyncio.sleep(interval)


def _pricer(catalog: Catalog | None):  # type: ignore[no-untyped-def]
    def price(model: str, seconds: float) -> float:
        try:
            return cost_usd(model, Usage(), audio_seconds=seconds, catalog=catalog)
        except CatalogError:
            log.warning("no prices for model %r; the lost call's time is recorded at $0", model)
            return 0.0

    return price
