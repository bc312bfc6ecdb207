"""Schema changes go through Alembic migrations, on SQLite and PostgreSQL alike: a fresh
database upgraded is exactly the models' schema, a database made before migrations is
adopted with its rows, a second upgrade changes nothing, and processes starting at once
on one database all come up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, inspect
from sqlmodel import SQLModel

from agentplatform.storage.database import make_engine
from agentplatform.storage.migrations.initial_schema import initial_metadata
from agentplatform.storage.queries import get_call
from agentplatform.storage.schema import current_revision, head_revision, upgrade_database
from tests.services import PG_CONNINFO, PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calls.db'}"
        return
    request.getfixturevalue("postgres_available")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def empty(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)


def test_a_fresh_database_upgraded_is_exactly_the_models_schema(empty: Engine) -> None:
    assert upgrade_database(empty) == head_revision()
    assert _differences(empty) == []


def test_upgrading_a_database_already_at_head_changes_nothing(empty: Engine) -> None:
    upgrade_database(empty)
    statements: list[str] = []
    event.listen(empty, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: statements.append(statement))
    assert upgrade_database(empty) == head_revision()
    writes = [s for s in statements
              if s.lstrip().split(None, 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT",
                                                        "UPDATE", "DELETE"}]
    assert writes == []


def test_a_database_made_before_migrations_is_adopted_with_its_rows(empty: Engine) -> None:
    # What the last release without migrations made: create_all, no alembic_version.
    initial_metadata().create_all(empty)
    started = datetime.now(UTC) - timedelta(minutes=5)
    spoke = started + timedelta(seconds=40)
    with empty.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO call (id, carrier_call_id, carrier, agent, model, requested_model, "
            "from_number, to_number, parameters, started_at, end_detail, input_text_tokens, "
            "input_audio_tokens, input_cached_tokens, output_text_tokens, output_audio_tokens, "
            "audio_seconds, interruptions, cost_usd) VALUES ('c1', 'CA1', 'twilio', 'desk', 'm', "
            "'m', '', '', '{}', :started, '', 1, 2, 0, 3, 4, 0, 0, 0.5)"
        ).bindparams(sa.bindparam("started", type_=sa.DateTime(timezone=True))),
            {"started": started})
        conn.execute(sa.text(
            "INSERT INTO turn (seq, role, text, interrupted, created_at, call_id) "
            "VALUES (1, 'user', 'hello', false, :at, 'c1')"
        ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))), {"at": spoke})
    assert current_revision(empty) is None

    assert upgrade_database(empty) == head_revision()

    assert _differences(empty) == []
    call = get_call(empty, "c1")
    assert call is not None and call.cost_usd == 0.5 and [t.text for t in call.turns] == ["hello"]
    with empty.connect() as conn:
        lease, seen = conn.execute(sa.text(
            "SELECT lease_expires_at, last_seen_at FROM call WHERE id = 'c1'")).one()
    # An open call from before leases: its lease runs to the longest call any agent
    # may have, and it was last seen when its last turn was recorded.
    assert _aware(lease) == started + timedelta(hours=4)
    assert _aware(seen) == spoke


def test_an_older_database_gets_the_columns_and_indexes_it_lacks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the call table as the first release made it
        old.execute(
            "CREATE TABLE call (id VARCHAR(32) PRIMARY KEY, carrier_call_id VARCHAR(128), "
            "carrier VARCHAR(32), agent VARCHAR(64), model VARCHAR(128), requested_model "
            "VARCHAR(128), from_number VARCHAR(64), to_number VARCHAR(64), parameters JSON, "
            "started_at DATETIME, ended_at DATETIME, end_reason VARCHAR(32), end_detail VARCHAR, "
            "duration_seconds FLOAT, input_text_tokens INTEGER, input_audio_tokens INTEGER, "
            "input_cached_tokens INTEGER, output_text_tokens INTEGER, output_audio_tokens INTEGER, "
            "cost_usd FLOAT)")
        old.execute(
            "INSERT INTO call VALUES ('c1', 'CA1', 'twilio', 'desk', 'm', 'm', '', '', '{}', "
            "'2026-01-01 10:00:00.000000', '2026-01-01 10:01:00.000000', 'caller_hung_up', '', "
            "60.0, 1, 2, 0, 3, 4, 0.5)")
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert upgrade_database(engine) == head_revision()
        inspector = inspect(engine)
        columns = {c["name"] for c in inspector.get_columns("call")}
        assert {"audio_seconds", "interruptions", "model_connected_at",
                "lease_expires_at", "last_seen_at"} <= columns
        assert {"ix_call_started_at", "ix_call_agent_started_at"} <= {
            i["name"] for i in inspector.get_indexes("call")}
        assert {"turn", "callevent", "calllease", "used_tokens"} <= set(inspector.get_table_names())
        old_call = get_call(engine, "c1")
        assert old_call is not None
        assert (old_call.audio_seconds, old_call.interruptions, old_call.model_connected_at) == (
            0.0, 0, None)
        assert old_call.cost_usd == 0.5 and old_call.end_reason == "caller_hung_up"
    finally:
        engine.dispose()


def test_servers_starting_at_once_on_one_database_all_upgrade_it(
    empty_url: str, tmp_path: Path,
) -> None:
    env = {**os.environ, "DATABASE_URL": empty_url}
    procs = [subprocess.Popen([sys.executable, "-m", "agentplatform.cli", "db", "upgrade"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
             for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    for output in outputs:
        assert f"database at revision {head_revision()}" in output
    # Exactly one of them ran the migrations; the others found the database at head.
    assert sum("Running upgrade  -> 0001" in output for output in outputs) == 1, outputs
    engine = make_engine(empty_url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
