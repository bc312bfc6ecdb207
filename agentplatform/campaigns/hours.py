"""Calling hours in the callee's own time zone, and the time zone of a number.

Hours are wall-clock times (``09:00``–``20:00``) in the callee's zone, so a call is
placed when the callee's clock is inside the window whatever the server's zone is,
and daylight-saving changes move the window with the callee's clock. A window whose
end is before its start (``21:00``–``02:00``) runs across midnight; one whose start
and end are equal (``00:00``–``00:00``) is open all day.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> time:
    """``"09:00"`` → ``time(9, 0)``; ``ValueError`` saying what is expected."""
    found = _HHMM.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return time(int(found[1]), int(found[2]))


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. America/New_York)") \
            from None


def is_time_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return name in _known_zones()


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _inside(local: time, start: time, end: time) -> bool:
    if start == end:
        return True  # a window with no length is read as "any time"
    if start < end:
        return start <= local < end
    return local >= start or local < end  # runs across midnight


def next_call_time(now: datetime, tz: str, start: time, end: time) -> datetime:
    """``now`` (aware) when the callee's clock is inside the window, else the next
    instant it opens, in UTC.

    On a spring-forward day an opening time that does not exist on the callee's
    clock (02:30 when clocks jump from 02:00 to 03:00) opens the window at the
    first instant after the jump; on a fall-back day an opening time that happens
    twice opens it the first time.
    """
    here = zone(tz)
    local = now.astimezone(here)
    if _inside(local.timetz().replace(tzinfo=None), start, end):
        return now
    for days in range(3):
        day = local.date() + timedelta(days=days)
        opening = _wall_clock(day, start, here)
        if opening > now:
            return opening.astimezone(UTC)
    raise AssertionError("a daily window opens within two days")  # pragma: no cover


def _wall_clock(day: date, at: time, here: ZoneInfo) -> datetime:
    """The first instant ``here``'s clocks read ``at`` on ``day`` or later that day —
    when the clocks skip ``at``, the instant they jump."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=here, fold=0)
    if first.astimezone(UTC).astimezone(here).replace(tzinfo=None) == naive:
        return first  # exists (the earlier of two on a fall-back day)
    # Skipped: the earlier-offset reading lies before the jump; walk to the jump.
    instant = naive.replace(tzinfo=here, fold=1).astimezone(UTC)
    for _ in range(24 * 60):
        if instant.astimezone(here).replace(tzinfo=None) >= naive:
            return instant
        instant += timedelta(minutes=1)
    return first  # pragma: no cover - no zone skips a whole day


def zone_for_number(number: str, default: str) -> str:
    """The callee's zone from the number's country and area code (``phonenumbers``):
    the one zone the number maps to, or ``default`` when it maps to several (a
    toll-free or mobile range spanning zones) or none."""
    try:
        import phonenumbers
        from phonenumbers import timezone as number_zones
    except ImportError:  # pragma: no cover - a declared dependency
        return default
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return default
    zones = [z for z in number_zones.time_zones_for_number(parsed) if is_time_zone(z)]
    return zones[0] if len(zones) == 1 else default
