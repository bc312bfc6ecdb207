"""Databases and servers every test folder may use: a fresh SQLite file per test, a
fresh PostgreSQL schema per test, and Redis — the servers started here when they are
installed but stopped (``tests/services.py``); when they still cannot be reached, their
tests skip with the reason, or fail under ``make test``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from agentplatform.storage.database import create_tables, make_engine
from tests.services import (
    PG_CONNINFO,
    PG_URL,
    REDIS_URL,
    ensure_postgres,
    ensure_redis,
    unavailable,
)

__all__ = ["PG_CONNINFO", "PG_URL", "REDIS_URL"]


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = ensure_postgres()
    if problem is not None:
        unavailable("PostgreSQL", problem)


@pytest.fixture(scope="session")
def redis_available() -> None:
    problem = ensure_redis()
    if problem is not None:
        unavailable("Redis", problem)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'calls.db'}")
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_available: None) -> Iterator[Engine]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}")
    try:
        create_tables(engine)
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
