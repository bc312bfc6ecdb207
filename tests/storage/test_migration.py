"""A database made by an earlier version keeps working: new columns are added."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import inspect

from agentplatform.storage.database import add_missing_columns, create_tables, make_engine
from agentplatform.storage.queries import get_call


def test_columns_added_since_an_older_database_are_created_with_defaults(tmp_path: Path) -> None:
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
            "'2026-01-01 10:00:00.000000', NULL, NULL, '', NULL, 1, 2, 0, 3, 4, 0.5)")
    engine = make_engine(f"sqlite:///{path}")
    create_tables(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("call")}
    assert {"audio_seconds", "interruptions", "model_connected_at"} <= columns
    assert add_missing_columns(engine) == []  # nothing left to add
    old_call = get_call(engine, "c1")
    assert old_call is not None
    assert (old_call.audio_seconds, old_call.interruptions, old_call.model_connected_at) == (
        0.0, 0, None)
    assert old_call.cost_usd == 0.5
    engine.dispose()
