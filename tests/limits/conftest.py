"""Limit stores to test against: the database on SQLite and PostgreSQL (the shared
fixtures in tests/conftest.py), and Redis when a server answers on 127.0.0.1:6379
(started here if the binary is installed)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from agentplatform.limits.redis_store import RedisLimitStore
from agentplatform.limits.store import DatabaseLimitStore, LimitStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_problem() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return None
    except redis.RedisError as exc:
        return str(exc)


@pytest.fixture(scope="session")
def redis_available() -> None:
    problem = _redis_problem()
    if problem is not None and shutil.which("redis-server"):
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
                        "--port", "6379", "--save", "", "--appendonly", "no"],
                       capture_output=True, timeout=10, check=False)
        for _ in range(50):
            problem = _redis_problem()
            if problem is None:
                break
            time.sleep(0.1)
    if problem is not None:
        pytest.skip(f"Redis not reachable on 127.0.0.1:6379 and could not be started: {problem}")


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
