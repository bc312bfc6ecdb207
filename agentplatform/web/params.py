"""Query parameters read strictly, for the calls screens and the calls API.

A query string is typed by whoever holds the URL. A value that is not what the
parameter means gets a 400 naming the parameter and the range it takes: never a 500
from a number the database cannot hold (``page=99999999999999999999``), a 422 in a
framework's own words, or a silently clamped answer (``limit=-1``) that hides the
mistake. Parameters arrive as strings; these functions are the only place they turn
into numbers, days and choices.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date

from fastapi import HTTPException

# Rows one API call may return, and the largest offset a pager can ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
MAX_PAGE = 100_000
# Longest free-text filter (an agent name, a phone number fragment).
MAX_FILTER_LENGTH = 100
MAX_NUMBER_LENGTH = 32

_DIGITS = re.compile(r"[0-9]{1,12}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def bad(name: str, value: str, expected: str) -> HTTPException:
    shown = value if len(value) <= 40 else value[:40] + "…"
    return HTTPException(status_code=400, detail=f"{name}: {shown!r} is not {expected}")


def whole_number(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    """``value`` as an integer in ``low..high`` (plain decimal digits only), ``default``
    when the parameter is absent."""
    if value is None:
        return default
    expected = f"a whole number in {low}..{high}"
    if not _DIGITS.fullmatch(value):
        raise bad(name, value, expected)
    number = int(value)
    if not low <= number <= high:
        raise bad(name, value, expected)
    return number


def day(value: str | None, name: str) -> date | None:
    """A calendar day (``YYYY-MM-DD``); None when absent or empty (an unset form field)."""
    if not value:
        return None
    try:
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise bad(name, value, "a date (YYYY-MM-DD)") from None


def day_range(since: str | None, until: str | None) -> tuple[date | None, date | None]:
    """``since`` and ``until`` as days, refusing a range that ends before it starts."""
    first, last = day(since, "since"), day(until, "until")
    if first and last and first > last:
        raise HTTPException(status_code=400,
                            detail=f"since: {first} is after until: {last}")
    return first, last


def choice(value: str | None, name: str, allowed: Collection[str]) -> str | None:
    """One of ``allowed``; None when absent or empty."""
    if not value:
        return None
    if value not in allowed:
        raise bad(name, value, "one of " + ", ".join(sorted(allowed)))
    return value


def text(value: str | None, name: str, *, max_length: int = MAX_FILTER_LENGTH) -> str | None:
    """A free-text filter, stripped; None when absent or blank."""
    if value is None or not value.strip():
        return None
    if len(value) > max_length or any(ord(c) < 32 for c in value):
        raise bad(name, value, f"a filter of at most {max_length} printable characters")
    return value.strip()
