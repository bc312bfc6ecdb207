"""Calling hours on the callee's clock, across time zones and daylight-saving days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentplatform.campaigns.hours import next_call_time, parse_hhmm, zone

NINE, EIGHT_PM = parse_hhmm("09:00"), parse_hhmm("20:00")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_inside_the_callees_hours_the_call_goes_now() -> None:
    now = _utc(2026, 6, 1, 16, 0)  # 09:00 in Los Angeles (PDT), 17:00 in London
    assert next_call_time(now, "America/Los_Angeles", NINE, EIGHT_PM) == now
    assert next_call_time(now, "Europe/London", NINE, EIGHT_PM) == now


def test_before_the_callees_hours_the_call_waits_for_their_nine_oclock() -> None:
    now = _utc(2026, 6, 1, 15, 59)  # 08:59 in Los Angeles
    assert next_call_time(now, "America/Los_Angeles", NINE, EIGHT_PM) == _utc(2026, 6, 1, 16, 0)


def test_after_the_callees_hours_the_call_waits_for_the_next_morning() -> None:
    now = _utc(2026, 6, 1, 19, 0)  # 20:00 in London: the window has just closed
    assert next_call_time(now, "Europe/London", NINE, EIGHT_PM) == _utc(2026, 6, 2, 8, 0)


def test_the_window_follows_the_callees_clock_over_a_spring_forward_night() -> None:
    # New York springs forward on 2026-03-08: 09:00 is 14:00 UTC the day before,
    # 13:00 UTC that day.
    now = _utc(2026, 3, 8, 2, 0)  # 21:00 EST on the 7th
    assert next_call_time(now, "America/New_York", NINE, EIGHT_PM) == _utc(2026, 3, 8, 13, 0)


def test_an_opening_time_the_clocks_skip_opens_when_they_jump() -> None:
    # 02:30 does not exist in New York on 2026-03-08 (02:00 → 03:00 EDT, 07:00 UTC).
    now = _utc(2026, 3, 8, 5, 0)
    opens = next_call_time(now, "America/New_York", parse_hhmm("02:30"), EIGHT_PM)
    assert opens == _utc(2026, 3, 8, 7, 0)
    assert opens.astimezone(zone("America/New_York")).hour == 3


def test_an_opening_time_that_happens_twice_opens_the_first_time() -> None:
    # New York falls back on 2026-11-01: 01:30 happens at 05:30 and 06:30 UTC.
    now = _utc(2026, 11, 1, 4, 0)
    assert next_call_time(now, "America/New_York", parse_hhmm("01:30"), EIGHT_PM) == \
        _utc(2026, 11, 1, 5, 30)


def test_a_window_across_midnight() -> None:
    start, end = parse_hhmm("21:00"), parse_hhmm("02:00")
    assert next_call_time(_utc(2026, 6, 1, 23, 30), "UTC", start, end) == \
        _utc(2026, 6, 1, 23, 30)
    assert next_call_time(_utc(2026, 6, 2, 1, 59), "UTC", start, end) == _utc(2026, 6, 2, 1, 59)
    assert next_call_time(_utc(2026, 6, 2, 2, 0), "UTC", start, end) == _utc(2026, 6, 2, 21, 0)


@pytest.mark.parametrize("bad", ["9:00", "24:00", "09:60", "nine"])
def test_times_of_day_must_be_hh_mm(bad: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(bad)
