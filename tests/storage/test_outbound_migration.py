"""Revision 0003: calls recorded before outbound calls existed are inbound, and their
status follows from whether they ended."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from agentplatform.storage.database import make_engine
from agentplatform.storage.schema import upgrade_database


def test_existing_calls_become_inbound_ended_or_in_progress(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_database(engine, "0002")
    with engine.begin() as conn:
        for call_id, ended in (("done", "2026-01-01 10:00:00"), ("live", None)):
            conn.execute(text(
                "INSERT INTO call (id, carrier_call_id, carrier, agent, model, requested_model, "
                "from_number, to_number, parameters, started_at, ended_at, end_detail, "
                "input_text_tokens, input_audio_tokens, input_cached_tokens, "
                "output_text_tokens, output_audio_tokens, audio_seconds, interruptions, "
                "cost_usd) VALUES (:id, 'CA', 'twilio', 'a', 'm', 'm', '', '', '{}', "
                "'2026-01-01 09:59:00', :ended, '', 0, 0, 0, 0, 0, 0, 0, 0)"),
                {"id": call_id, "ended": ended})
    upgrade_database(engine, "0003")
    with engine.connect() as conn:
        rows = dict(conn.execute(text(
            "SELECT id, direction || '/' || status || '/' || machine_detection FROM call")).all())
    engine.dispose()
    assert rows == {"done": "inbound/ended/", "live": "inbound/in_progress/"}
