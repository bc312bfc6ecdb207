"""Single use across processes: two stores on one database (SQLite file, PostgreSQL)
or one Redis stand for two server processes; only one of them may claim an id."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from agentplatform.single_use import (
    DatabaseSingleUse,
    RedisSingleUse,
    SingleUseStore,
    SingleUseUnavailable,
)
from agentplatform.storage.database import create_tables, make_engine
from agentplatform.storage.models import UsedToken
from tests.limits.conftest import REDIS_URL, redis_available  # noqa: F401  (fixture)

StoreMaker = Callable[[], SingleUseStore]


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def two_processes(request: pytest.FixtureRequest,
                        tmp_path: Path) -> AsyncIterator[tuple[SingleUseStore, SingleUseStore]]:
    """Two independent stores that share only the backing server, as two processes do."""
    if request.param == "redis":
        request.getfixturevalue("redis_available")
        prefix = f"test:{uuid.uuid4().hex[:12]}:"
        a, b = RedisSingleUse(REDIS_URL, prefix=prefix), RedisSingleUse(REDIS_URL, prefix=prefix)
        yield a, b
        await a.close()
        await b.close()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        engines = [make_engine(url), make_engine(url)]
        create_tables(engines[0])
    else:
        engine = request.getfixturevalue("postgres_engine")
        engines = [make_engine(engine.url.render_as_string(hide_password=False)) for _ in range(2)]
    yield DatabaseSingleUse(engines[0]), DatabaseSingleUse(engines[1])
    for engine in engines:
        engine.dispose()


async def test_an_id_is_claimed_once_across_processes(two_processes) -> None:
    a, b = two_processes
    expires = time.time() + 60
    assert await a.claim("stream:abc", expires) is True
    assert await b.claim("stream:abc", expires) is False
    assert await a.claim("stream:abc", expires) is False
    assert await b.is_claimed("stream:abc") is True
    assert await a.is_claimed("stream:other") is False
    assert await b.claim("stream:other", expires) is True


async def test_concurrent_claims_of_one_id_have_one_winner(two_processes) -> None:
    import asyncio

    a, b = two_processes
    expires = time.time() + 60
    results = await asyncio.gather(*(s.claim("race", expires) for s in (a, b, a, b, a, b)))
    assert sorted(results) == [False] * 5 + [True]


async def test_expired_rows_are_purged_by_a_later_claim(sqlite_engine) -> None:
    now = [1_000_000.0]
    store = DatabaseSingleUse(sqlite_engine, clock=lambda: now[0])
    assert await store.claim("old", now[0] + 10)
    now[0] += 3600  # past the purge interval and the token's expiry
    assert await store.is_claimed("old") is False
    assert await store.claim("new", now[0] + 10)
    with Session(sqlite_engine) as session:
        ids = session.exec(select(UsedToken.token_id)).all()
        assert ids == ["new"]
        assert session.exec(select(func.count()).select_from(UsedToken)).one() == 1


async def test_a_database_outage_is_an_error_not_a_pass(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'no-tables.db'}")  # used_tokens missing
    store = DatabaseSingleUse(engine)
    with pytest.raises(SingleUseUnavailable):
        await store.claim("x", time.time() + 60)
    engine.dispose()


async def test_an_unreachable_redis_is_an_error_not_a_pass() -> None:
    store = RedisSingleUse("redis://127.0.0.1:1/0")
    with pytest.raises(SingleUseUnavailable):
        await store.claim("x", time.time() + 60)
    await store.close()


async def test_an_oversized_id_is_refused_by_name(sqlite_engine) -> None:
    with pytest.raises(ValueError, match="token id"):
        await DatabaseSingleUse(sqlite_engine).claim("x" * 500, time.time() + 60)
