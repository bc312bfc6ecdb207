"""Where spend-control counters live so that every server process sees the same ones.

Two kinds of counter:

* **Concurrency slots** are leases: a call holds ``(scope, holder)`` until
  ``expires_at`` and its process renews the lease while the call runs. A process
  that dies stops renewing, so its slots free themselves after one lease period;
  nothing has to clean up after a crash.
* **Daily counters** (calls per caller per day) are bumped only while below the
  limit, in one atomic statement, so two processes cannot both take the last call.

``DatabaseLimitStore`` keeps both in the call-record database (SQLite or
PostgreSQL); ``RedisLimitStore`` (``limits/redis_store.py``) in Redis. Methods are
synchronous and short: the gate runs them in a worker thread at call setup, never
on the audio path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from agentplatform.storage.models import CallLease, DailyCounter, LimitScope, utcnow


class LimitStore(Protocol):
    def acquire(self, scope: str, holder: str, limit: int, ttl: float) -> bool:
        """Take (or renew) a slot in ``scope`` for ``holder`` if fewer than ``limit``
        live slots are held; False when the scope is full."""

    def renew(self, leases: Iterable[tuple[str, str]], ttl: float) -> int:
        """Push the expiry of each held ``(scope, holder)`` out by ``ttl``; returns how
        many still existed."""

    def release(self, scope: str, holder: str) -> None: ...

    def release_holder(self, holder: str) -> None:
        """Free every slot ``holder`` holds, whatever the scope (a call that ended
        before its stream started)."""

    def active(self, scope: str) -> int:
        """Live (unexpired) slots in ``scope``."""

    def count_if_below(self, key: str, day: str, limit: int) -> bool:
        """Add one to ``key`` for ``day`` unless it already reached ``limit``."""

    def count(self, key: str, day: str) -> int: ...

    def close(self) -> None: ...


def _insert_ignore(session: Session, model: type, **values: Any) -> None:
    """``INSERT … ON CONFLICT DO NOTHING`` in the engine's own dialect."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.exec(insert(model).values(**values).on_conflict_do_nothing())  # type: ignore[call-overload]


class DatabaseLimitStore:
    """Leases and daily counters as rows in the call-record database.

    A slot check first bumps its scope's ``LimitScope`` row. That write takes the
    row lock on PostgreSQL and the write lock on SQLite, so checks for one scope run
    one after another across processes, and the count that follows is exact.
    """

    def __init__(self, engine: Engine, *, clock: Any = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def acquire(self, scope: str, holder: str, limit: int, ttl: float) -> bool:
        now = self._clock()
        expires = now + timedelta(seconds=ttl)
        with Session(self._engine) as session:
            _insert_ignore(session, LimitScope, scope=scope, version=0)
            session.exec(update(LimitScope).where(LimitScope.scope == scope)
                         .values(version=LimitScope.version + 1))
            session.exec(delete(CallLease).where(CallLease.scope == scope,
                                                 CallLease.expires_at < now))
            mine = session.get(CallLease, (scope, holder))
            if mine is not None:
                mine.expires_at = expires
            else:
                held = session.exec(select(func.count()).select_from(CallLease)
                                    .where(CallLease.scope == scope)).one()
                if held >= limit:
                    session.commit()  # keep the expired-lease cleanup
                    return False
                session.add(CallLease(scope=scope, holder=holder, expires_at=expires))
            session.commit()
            return True

    def renew(self, leases: Iterable[tuple[str, str]], ttl: float) -> int:
        expires = self._clock() + timedelta(seconds=ttl)
        renewed = 0
        with Session(self._engine) as session:
            for scope, holder in leases:
                result = session.exec(update(CallLease).where(
                    CallLease.scope == scope, CallLease.holder == holder,
                ).values(expires_at=expires))
                renewed += result.rowcount
            session.commit()
        return renewed

    def release(self, scope: str, holder: str) -> None:
        with Session(self._engine) as session:
            session.exec(delete(CallLease).where(CallLease.scope == scope,
                                                 CallLease.holder == holder))
            session.commit()

    def release_holder(self, holder: str) -> None:
        with Session(self._engine) as session:
            session.exec(delete(CallLease).where(CallLease.holder == holder))
            session.commit()

    def active(self, scope: str) -> int:
        with Session(self._engine) as session:
            return session.exec(select(func.count()).select_from(CallLease).where(
                CallLease.scope == scope, CallLease.expires_at >= self._clock())).one()

    def count_if_below(self, key: str, day: str, limit: int) -> bool:
        with Session(self._engine) as session:
            _insert_ignore(session, DailyCounter, key=key, day=day, count=0)
            result = session.exec(update(DailyCounter).where(
                DailyCounter.key == key, DailyCounter.day == day, DailyCounter.count < limit,
            ).values(count=DailyCounter.count + 1))
            session.commit()
            return result.rowcount == 1

    def count(self, key: str, day: str) -> int:
        with Session(self._engine) as session:
            row = session.get(DailyCounter, (key, day))
            return row.count if row is not None else 0

    def close(self) -> None:
        """Nothing to close: the engine belongs to the application."""


def utc_day(at: datetime | None = None) -> str:
    """The UTC calendar day budgets and daily caps count in, as ``YYYY-MM-DD``."""
    return (at or utcnow()).strftime("%Y-%m-%d")
