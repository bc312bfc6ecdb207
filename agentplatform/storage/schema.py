"""Bring a database to the newest schema: Alembic migrations, run at server start and
by ``agentplatform db upgrade``.

Several server processes may start on one database at once. Each takes a lock
for the whole upgrade — a transaction-scoped advisory lock on PostgreSQL, an
exclusive file lock next to the file on SQLite — so one migrates and the others
then find the database already at head. On other backends a lost race is retried.

A database made before migrations existed (tables made by ``create_all``, columns
added at start, no ``alembic_version``) is adopted: given whatever tables, columns
and indexes of revision 0001 it lacks, stamped 0001, then upgraded like any other.
Its rows are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from agentplatform.storage.migrations.initial_schema import INITIAL_REVISION, initial_metadata

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# One key for every process of this application, whatever the schema.
_PG_LOCK_KEY = zlib.crc32(b"agentplatform schema upgrade")
_ATTEMPTS = 3


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_database(engine: Engine, revision: str = "head") -> str | None:
    """Migrate ``engine``'s database to ``revision``; returns the revision it is at."""
    for attempt in range(_ATTEMPTS):
        try:
            with _upgrade_lock(engine), engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": _PG_LOCK_KEY})
                if _made_before_migrations(conn):
                    _adopt(conn)
                command.upgrade(alembic_config(conn), revision)
            return current_revision(engine)
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == _ATTEMPTS - 1:
                raise
            log.info("schema upgrade raced another process; trying again")
            time.sleep(0.05 * (attempt + 1))
    return None  # not reached


def _made_before_migrations(conn: Connection) -> bool:
    inspector = sa.inspect(conn)
    return inspector.has_table("call") and not inspector.has_table("alembic_version")


def _adopt(conn: Connection) -> None:
    """Give a pre-migration database revision 0001's shape, then stamp it 0001."""
    meta = initial_metadata()
    meta.create_all(conn, checkfirst=True)
    inspector = sa.inspect(conn)
    added: list[str] = []
    for table in meta.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                _add_column(conn, table.name, column)
                added.append(f"{table.name}.{column.name}")
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                added.append(str(index.name))
    command.stamp(alembic_config(conn), INITIAL_REVISION)
    log.warning("adopted a database made before migrations (added: %s); stamped %s",
                ", ".join(added) or "nothing", INITIAL_REVISION)


def _add_column(conn: Connection, table: str, column: sa.Column) -> None:  # type: ignore[type-arg]
    """``ADD COLUMN`` as revision 0001 has it; NOT NULL only where a server default
    fills the existing rows (a database cannot add it otherwise)."""
    preparer = conn.dialect.identifier_preparer
    ddl = (f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(column.name)} "
           f"{column.type.compile(dialect=conn.dialect)}")
    if column.server_default is not None:
        default = column.server_default.arg  # type: ignore[attr-defined]
        literal = default if isinstance(default, str) else None
        if literal is not None:
            ddl += f" DEFAULT '{literal}'"
        else:
            ddl += f" DEFAULT {default.compile(dialect=conn.dialect)}"
        if not column.nullable:
            ddl += " NOT NULL"
    conn.execute(sa.text(ddl))


@contextlib.contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    """Across processes on one machine, for a SQLite file; nothing for other backends
    (PostgreSQL's lock is taken inside the upgrade's transaction)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        yield
        return
    lock_path = Path(f"{url.database}.upgrade-lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
