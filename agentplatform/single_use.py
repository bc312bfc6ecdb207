"""Single use across processes: "this id has been spent", shared by every server.

A signed token proves who minted it, not that it was used only once. A media-stream
token, a browser one-call token or a logged-out session's id is *claimed* here; the
first claim wins and every later one, in this process or any other on the same
database or Redis, loses. Each claim carries the token's own expiry, so the record
of it need not outlive the token: after that the signature check refuses it anyway.

* ``DatabaseSingleUse``: one row per claimed id in ``used_tokens``; a claim is an
  ``INSERT`` that the primary key refuses the second time. It runs in a worker
  thread (the event loop never waits on the database); expired rows are purged now
  and then by the claims themselves.
* ``MemorySingleUse``: one process only, for tests.
* ``RedisSingleUse`` (``REDIS_URL`` set): ``SET key 1 NX PX <ms to expiry>``; Redis
  drops the key itself when the token would have expired.

If the store cannot answer, ``claim`` raises ``SingleUseUnavailable``: the caller
refuses (fails closed) rather than letting a possibly replayed token through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session

from agentplatform.config import Settings
from agentplatform.errors import PlatformError
from agentplatform.storage.models import UsedToken

log = logging.getLogger(__name__)

PREFIX = "agentplatform:used:"
PURGE_EVERY_SECONDS = 60.0
# Ids longer than this are refused rather than truncated (two could then collide).
MAX_ID_LENGTH = 128


class SingleUseUnavailable(PlatformError):
    """The store could not say whether the id was already used."""


class SingleUseStore(Protocol):
    async def claim(self, token_id: str, expires_at: float) -> bool:
        """True the first time ``token_id`` is claimed, across processes; False after.
        ``expires_at`` (epoch seconds) is when the token stops verifying anyway."""

    async def is_claimed(self, token_id: str) -> bool:
        """Whether ``token_id`` was claimed (and its expiry has not passed)."""

    async def close(self) -> None: ...


def _check_id(token_id: str) -> None:
    if not token_id or len(token_id) > MAX_ID_LENGTH:
        raise ValueError(f"token id must be 1..{MAX_ID_LENGTH} characters, got {len(token_id)}")


class DatabaseSingleUse:
    """Claimed ids as rows of ``used_tokens`` in the call-record database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._next_purge = 0.0

    async def claim(self, token_id: str, expires_at: float) -> bool:
        _check_id(token_id)
        return await asyncio.to_thread(self._claim, token_id, expires_at)

    async def is_claimed(self, token_id: str) -> bool:
        _check_id(token_id)
        return await asyncio.to_thread(self._is_claimed, token_id)

    async def close(self) -> None:
        return None

    def _claim(self, token_id: str, expires_at: float) -> bool:
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_SECONDS
            self._purge(now)
        row = UsedToken(token_id=token_id,
                        expires_at=datetime.fromtimestamp(expires_at, UTC))
        try:
            with Session(self._engine) as session:
                session.add(row)
                session.commit()
            return True
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise SingleUseUnavailable(f"could not record a used token: {exc}") from exc

    def _is_claimed(self, token_id: str) -> bool:
        try:
            with Session(self._engine) as session:
                row = session.get(UsedToken, token_id)
        except SQLAlchemyError as exc:
            raise SingleUseUnavailable(f"could not read used tokens: {exc}") from exc
        return row is not None and row.expires_at.timestamp() > self._clock()

    def _purge(self, now: float) -> None:
        """Drop rows whose tokens have expired: they can no longer be presented."""
        cutoff = datetime.fromtimestamp(now, UTC)
        try:
            with Session(self._engine) as session:
                session.exec(delete(UsedToken).where(UsedToken.expires_at < cutoff))  # type: ignore[call-overload, arg-type]
                session.commit()
        except SQLAlchemyError as exc:  # a purge can wait for the next one
            log.warning("could not purge expired used tokens: %s", exc)


class RedisSingleUse:
    """Claimed ids as Redis keys that expire with their tokens."""

    def __init__(self, url: str, *, prefix: str = PREFIX,
                 clock: Callable[[], float] = time.time) -> None:
        try:
            self._redis = aioredis.Redis.from_url(url, socket_timeout=2.0,
                                                  socket_connect_timeout=2.0)
        except ValueError as exc:
            raise PlatformError(f"REDIS_URL is not a Redis URL: {exc}") from exc
        self._prefix = prefix
        self._clock = clock

    async def claim(self, token_id: str, expires_at: float) -> bool:
        _check_id(token_id)
        # At least a second: an id claimed just as it expires still counts as used.
        ttl_ms = max(1000, int((expires_at - self._clock()) * 1000))
        try:
            return bool(await self._redis.set(self._prefix + token_id, b"1", nx=True, px=ttl_ms))
        except redis.RedisError as exc:
            raise SingleUseUnavailable(f"could not record a used token: {exc}") from exc

    async def is_claimed(self, token_id: str) -> bool:
        _check_id(token_id)
        try:
            return bool(await self._redis.exists(self._prefix + token_id))
        except redis.RedisError as exc:
            raise SingleUseUnavailable(f"could not read used tokens: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


class MemorySingleUse:
    """Claimed ids in this process only: for tests and a router built on its own.
    The application always passes the shared store from ``single_use_store``."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._claimed: dict[str, float] = {}

    async def claim(self, token_id: str, expires_at: float) -> bool:
        _check_id(token_id)
        now = self._clock()
        self._claimed = {k: v for k, v in self._claimed.items() if v > now} \
            if len(self._claimed) > 1000 else self._claimed
        if self._claimed.get(token_id, 0.0) > now:
            return False
        self._claimed[token_id] = max(expires_at, now + 1.0)
        return True

    async def is_claimed(self, token_id: str) -> bool:
        _check_id(token_id)
        return self._claimed.get(token_id, 0.0) > self._clock()

    async def close(self) -> None:
        return None


def single_use_store(settings: Settings, engine: Engine) -> SingleUseStore:
    """Redis when ``REDIS_URL`` is set (like the spend-control counters), else the
    call-record database."""
    if settings.redis_url:
        return RedisSingleUse(settings.redis_url)
    return DatabaseSingleUse(engine)
