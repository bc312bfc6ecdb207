"""The PostgreSQL and Redis servers the cross-process tests need, on 127.0.0.1.

A server that is installed but stopped is started (these are the commands CI
uses). One that still cannot be reached skips its tests with the reason — or,
under ``make test`` (``AGENTPLATFORM_REQUIRE_SERVICES=1``), fails them, so CI
cannot pass with the cross-process claims untested.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import redis

REQUIRE_ENV = "AGENTPLATFORM_REQUIRE_SERVICES"
PG_DATABASE = "test"
PG_CONNINFO = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_DATABASE} connect_timeout=3"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRESQL_CONFIGS = Path("/etc/postgresql")
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
               "--port", "6379", "--save", "", "--appendonly", "no",
               "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def unavailable(what: str, problem: str) -> None:
    """Skip (why is shown with ``-rs``), or fail when the services are required."""
    message = f"{what}: {problem}"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{message} ({REQUIRE_ENV} is set, so this fails rather than skips)",
                    pytrace=False)
    pytest.skip(message)


def _run(command: list[str]) -> str:
    """Run a start command; what it said when it did not succeed, else ''."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(command)}: {exc}"
    if done.returncode == 0:
        return ""
    return f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"


# ---------------------------------------------------------------- PostgreSQL


def postgres_problem() -> str | None:
    """None when PostgreSQL answers with the test database, else why not."""
    try:
        with psycopg.connect(PG_CONNINFO) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip()


def ensure_postgres() -> str | None:
    """Start the cluster if it is stopped and create the test database if missing;
    None once it answers, else why it does not."""
    problem = postgres_problem()
    if problem is None:
        return None
    said = ""
    versions = sorted(p.name for p in POSTGRESQL_CONFIGS.glob("*"))
    if versions:
        said = _run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"])
    if f'database "{PG_DATABASE}" does not exist' in (postgres_problem() or ""):
        _create_test_database()
    problem = postgres_problem()
    if problem is None:
        return None
    where = f"clusters {versions} under {POSTGRESQL_CONFIGS}" if versions else \
        f"no cluster under {POSTGRESQL_CONFIGS} (is PostgreSQL installed?)"
    return (f"PostgreSQL not reachable on 127.0.0.1:5432 (user postgres, trust auth, "
            f"database {PG_DATABASE!r}): {problem}; {where}" + (f"; {said}" if said else ""))


def _create_test_database() -> None:
    try:
        with psycopg.connect(PG_CONNINFO.replace(f"dbname={PG_DATABASE}", "dbname=postgres"),
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    except psycopg.Error:
        pass  # reported by the next connection attempt


# ---------------------------------------------------------------- Redis


def redis_problem() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return None
    except redis.RedisError as exc:
        return str(exc)


def ensure_redis() -> str | None:
    """Start redis-server if it is installed and not answering; None once it answers."""
    problem = redis_problem()
    if problem is None:
        return None
    said = "redis-server is not installed"
    if shutil.which("redis-server"):
        for folder in ("/var/lib/redis", "/var/log/redis"):  # the start command writes there
            with contextlib.suppress(OSError):
                Path(folder).mkdir(parents=True, exist_ok=True)
        said = _run(REDIS_START)
        for _ in range(50):
            problem = redis_problem()
            if problem is None:
                return None
            time.sleep(0.1)
    return f"Redis not reachable on 127.0.0.1:6379: {problem}" + (f"; {said}" if said else "")
