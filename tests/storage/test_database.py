from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, inspect, text

from agentplatform.storage.database import create_tables, make_engine


def test_sqlite_file_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() > 0
    finally:
        engine.dispose()


def test_sqlite_connection_can_be_used_from_another_thread(sqlite_engine: Engine) -> None:
    # The writer thread reuses pooled connections made elsewhere.
    with sqlite_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    seen: list[object] = []

    def read() -> None:
        try:
            with sqlite_engine.connect() as conn:
                seen.append(conn.execute(text("SELECT count(*) FROM call")).scalar())
        except Exception as exc:  # noqa: BLE001 - reported through the assertion
            seen.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [0]


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    engine = make_engine("sqlite://")
    try:
        create_tables(engine)
        tables: list[list[str]] = []
        thread = threading.Thread(target=lambda: tables.append(inspect(engine).get_table_names()))
        thread.start()
        thread.join()
        assert "call" in tables[0]
    finally:
        engine.dispose()


def test_create_tables_makes_the_call_record_tables_and_is_repeatable(engine: Engine) -> None:
    create_tables(engine)  # the fixture already ran it once
    names = set(inspect(engine).get_table_names())
    assert {"call", "turn", "toolinvocation", "callevent"} <= names
    indexes = {i["name"] for i in inspect(engine).get_indexes("call")}
    assert "ix_call_carrier_call_id" in indexes


def test_postgresql_url_uses_psycopg() -> None:
    engine = make_engine("postgresql+psycopg://u:p@db.invalid/calls")
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


def test_processes_racing_to_create_the_tables_all_succeed(tmp_path) -> None:
    import threading

    from agentplatform.storage.database import create_tables, make_engine

    url = f"sqlite:///{tmp_path / 'race.db'}"
    errors: list[BaseException] = []

    def start() -> None:
        try:
            create_tables(make_engine(url))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
