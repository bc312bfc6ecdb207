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
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from agentplatform.storage import models  # noqa: F401  (registers the tables)
from agentplatform.storage.schema import upgrade_database

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
    """Bring the database to the newest schema by running the migrations
    (``storage/schema.py``): the tables of a fresh database, the changes since for
    an older one. Safe when several processes start on one database at once."""
    upgrade_database(engine)
