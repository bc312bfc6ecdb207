from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from agentplatform.agents.placeholders import (
    KNOWN_NAMES,
    CallContext,
    context_values,
    find_placeholders,
    render,
    unknown_placeholders,
)

# 2025-03-04 was a Tuesday; 14:05 UTC is 09:05 in New York (EST, UTC-5).
NOW = datetime(2025, 3, 4, 14, 5, tzinfo=UTC)


def _context(**overrides: object) -> CallContext:
    values: dict = dict(caller_number="+15555550123", called_number="+15555550100",
                        call_id="c0ffee", agent_name="front-desk",
                        params={"customer": "Ada"}, now=NOW)
    values.update(overrides)
    return CallContext(**values)


def test_find_placeholders_allows_whitespace_and_drops_repeats() -> None:
    text = "Hi {{caller_number}}, {{  weekday }} {{caller_number}} {{params.customer}}"
    assert find_placeholders(text) == ["caller_number", "weekday", "params.customer"]


def test_find_placeholders_ignores_single_braces_and_empty_text() -> None:
    assert find_placeholders("a {b} {c}} {{{") == []
    assert find_placeholders(None) == []


def test_unknown_placeholders_are_reported_by_name() -> None:
    text = "{{caller_number}} {{callr_number}} {{params.x}} {{params.}} {{local time}}"
    assert unknown_placeholders(text) == ["callr_number", "params.", "local time"]


def test_every_documented_name_is_known() -> None:
    text = " ".join(f"{{{{{n}}}}}" for n in KNOWN_NAMES)
    assert unknown_placeholders(text) == []
    assert set(KNOWN_NAMES) == {"caller_number", "called_number", "call_id", "agent_name",
                                "local_date", "local_time", "local_datetime", "weekday"}


def test_render_fills_call_values_and_params() -> None:
    text = "{{agent_name}} got call {{ call_id }} from {{caller_number}} to {{called_number}} " \
           "for {{params.customer}}"
    assert render(text, _context()) == (
        "front-desk got call c0ffee from +15555550123 to +15555550100 for Ada")


def test_render_uses_the_agent_timezone() -> None:
    text = "{{weekday}} {{local_date}} {{local_time}} | {{local_datetime}}"
    assert render(text, _context(timezone="America/New_York")) == (
        "Tuesday 2025-03-04 09:05 | 2025-03-04 09:05 America/New_York")


def test_render_defaults_to_utc_and_treats_naive_now_as_utc() -> None:
    naive = datetime(2025, 3, 4, 23, 30)
    assert render("{{local_datetime}}", _context(now=naive)) == "2025-03-04 23:30 UTC"
    # 23:30 UTC is already Wednesday in Tokyo.
    assert render("{{weekday}}", _context(now=naive, timezone="Asia/Tokyo")) == "Wednesday"


def test_missing_param_renders_empty_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert render("Hello {{params.nickname}}!", _context()) == "Hello !"
    assert "params.nickname" in caplog.text


def test_unknown_placeholder_is_left_as_written_not_raised() -> None:
    assert render("Hi {{ nobody }}", _context()) == "Hi {{ nobody }}"


def test_text_without_placeholders_is_returned_unchanged() -> None:
    text = "Plain prompt with {single} braces."
    assert render(text, _context()) is text


def test_context_values_include_params() -> None:
    values = context_values(_context(timezone="America/New_York"))
    assert values["local_time"] == "09:05"
    assert values["params.customer"] == "Ada"
