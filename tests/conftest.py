"""Databases every test folder may use: a fresh SQLite file per test, and a fresh
PostgreSQL schema per test when a server is reachable on 127.0.0.1:5432 (started
here if it is installed but stopped; skipped with the reason otherwise)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from agentplatform.storage.database import create_tables, make_engine

PG_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_CONNINFO) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip()


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = _pg_reachable()
    if problem is not None:
        versions = sorted(p.name for p in Path("/etc/postgresql").glob("*"))
        if versions:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                capture_output=True, timeout=30, check=False,
            )
            problem = _pg_reachable()
    if problem is not None:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432 (trust auth, db 'test'): "
                    f"{problem}")


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
