"""A call record as a person reads it: labelled event rows, the end reason once, and
transcript times since the call started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentplatform.web.call_view import detail_rows, end_text, offset_text, since_start


def test_an_event_detail_reads_as_labelled_rows_with_units():
    rows = detail_rows({"connect_ms": 412.5, "model": "openai/gpt-realtime",
                        "fallback": False, "voices": ["marin", "cedar"]})
    assert rows == [("Connect", "412 ms"), ("Model", "openai/gpt-realtime"),
                    ("Fallback", "no"), ("Voices", '["marin", "cedar"]')]
    assert detail_rows({}) == [] and detail_rows("text") == [("Detail", "text")]


def test_the_end_reason_is_said_once_when_the_detail_only_repeats_it():
    assert end_text("caller_hung_up", "caller hung up") == ("caller hung up", "")
    assert end_text("caller_hung_up", "Caller hung up.") == ("caller hung up", "")
    assert end_text("provider_error", "model socket closed") == ("provider error",
                                                                 "model socket closed")
    assert end_text(None, None) == ("still live", "")


def test_transcript_times_count_from_the_call_start():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [start + timedelta(seconds=s) for s in (0.2, 83.44, -1)]
    assert [offset_text(s) for s in since_start(start, stamps)] == ["0:00.2", "1:23.4", "0:00.0"]
