"""Limit stores to test against: the database on SQLite and PostgreSQL, and Redis (the
shared fixtures in tests/conftest.py start the servers or say why they cannot)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from agentplatform.limits.redis_store import RedisLimitStore
from agentplatform.limits.store import DatabaseLimitStore, LimitStore

# Kept importable from here for the tests that take them from this folder.
from tests.conftest import REDIS_URL, redis_available  # noqa: E402, F401


@pytest.fixture
def redis_store(redis_available: None) -> Iterator[RedisLimitStore]:
    # A fresh key prefix per test: tests never see each other's counters.
    store = RedisLimitStore(REDIS_URL, prefix=f"test:{uuid.uuid4().hex[:12]}:")
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[LimitStore]:
    if request.param == "redis":
        yield request.getfixturevalue("redis_store")
    else:
        yield DatabaseLimitStore(request.getfixturevalue(f"{request.param}_engine"))
