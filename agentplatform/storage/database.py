"""Engines for the call records: SQLite on one machine, PostgreSQL across several.

The URL alone picks the backend (``Settings.database_url``). SQLite gets the
settings that let a background writer thread and request handlers share one file:
WAL (readers never wait for the writer), a busy timeout instead of instant
"database is locked" errors, foreign keys on (SQLite leaves them off), and
``check_same_thread=False`` because the writer's thread is not the one that made
the engine. PostgreSQL needs nothing special beyond pre-ping, so a connection the
server dropped overnight is replaced instead of failing the next write.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from agentplatform.storage import models  # noqa: F401  (registers the tables)

DEFAULT_URL = "sqlite:///agentplatform.db"
SQLITE_BUSY_TIMEOUT_MS = 5000


def _json_dumps(value: Any) -> str:
    # Event details come from many places; a stray non-JSON value (a datetime, an
    # enum) is stored as its text rather than failing the whole batch.
    return json.dumps(value, default=str, ensure_ascii=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, in_memory: bool) -> None:
    cursor = dbapi_connection.cursor()
    try:
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, far fewer fsyncs
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def make_engine(url: str = DEFAULT_URL, **engine_kwargs: Any) -> Engine:
    """An engine for ``url``: ``sqlite:///file.db``, ``sqlite://`` (in memory) or
    ``postgresql+psycopg://user:pass@host/db``. Extra keyword arguments go to
    SQLAlchemy's ``create_engine`` (``echo=True`` to see the SQL)."""
    parsed = make_url(url)
    engine_kwargs.setdefault("json_serializer", _json_dumps)
    if parsed.get_backend_name() != "sqlite":
        engine_kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **engine_kwargs)

    in_memory = parsed.database in (None, "", ":memory:")
    connect_args = dict(engine_kwargs.pop("connect_args", {}))
    connect_args.setdefault("check_same_thread", False)
    if in_memory:
        # One shared connection, or every thread would see its own empty database.
        engine_kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(url, connect_args=connect_args, **engine_kwargs)
    event.listen(
        engine, "connect",
        lambda conn, record: _sqlite_pragmas(conn, record, in_memory=in_memory),
    )
    return engine


def create_tables(engine: Engine) -> None:
    """Create every registered table that does not exist yet, and add columns that
    were added to an existing table since (a database from an earlier version keeps
    working). Changed or dropped columns still need a migration tool.

    Several server processes may start at once on one database: one that loses the
    race between "does it exist?" and "create it" tries again, and then finds it.
    """
    for attempt in range(3):
        try:
            SQLModel.metadata.create_all(engine)
            add_missing_columns(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))


def add_missing_columns(engine: Engine) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` for every model column the database lacks.

    New columns are added nullable with their scalar default, so old rows read as
    "not measured" (or 0) rather than failing. Returns ``table.column`` names added.
    """
    inspector = inspect(engine)
    added: list[str] = []
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if not inspector.has_table(table.name, schema=table.schema):
                continue
            present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
            for column in table.columns:
                if column.name in present:
                    continue
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} " \
                      f"{column.type.compile(dialect=engine.dialect)}"
                default = getattr(column.default, "arg", None)
                if default is None and not column.nullable:
                    default = _ZERO.get(_python_type(column))  # a count or a sum: 0
                if isinstance(default, bool | int | float) and not callable(default):
                    ddl += f" DEFAULT {_sql_literal(default)}"
                conn.execute(text(ddl))
                added.append(f"{table.name}.{column.name}")
    return added


_ZERO: dict[type, bool | int | float] = {bool: False, int: 0, float: 0.0}


def _python_type(column: Any) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _sql_literal(value: bool | int | float) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)
