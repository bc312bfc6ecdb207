"""How fast a campaign dials, and how long it waits before calling a number again.

The token bucket's state (tokens, when last filled) is stored on the campaign row
and updated in the same transaction that claims contacts, so every process sharing
a campaign draws from one bucket: the rate holds for the fleet, not per process.
Time always comes in as an argument, so tests drive it with their own clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

# Back-off doubles per attempt from the campaign's first delay, up to this.
MAX_BACKOFF = timedelta(hours=24)


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, holding at most ``capacity`` (at least one call's worth)."""

    rate: float
    capacity: float
    tokens: float
    filled_at: datetime

    @classmethod
    def for_rate(cls, calls_per_second: float, tokens: float | None,
                 filled_at: datetime | None, now: datetime) -> TokenBucket:
        """The bucket of a campaign dialing ``calls_per_second``: a burst of at most one
        second's calls (and at least one), full when the campaign has never dialed."""
        capacity = max(1.0, calls_per_second)
        if tokens is None or filled_at is None:
            return cls(calls_per_second, capacity, capacity, now)
        return cls(calls_per_second, capacity, min(tokens, capacity), filled_at)

    def refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self.filled_at).total_seconds())
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.filled_at = max(now, self.filled_at)  # a clock step back never mints tokens

    def take(self, wanted: int, now: datetime) -> int:
        """Take up to ``wanted`` whole tokens; returns how many were taken."""
        self.refill(now)
        granted = max(0, min(wanted, math.floor(self.tokens + 1e-9)))
        self.tokens -= granted
        return granted

    def give_back(self, count: int) -> None:
        """Return tokens taken for calls that were not placed after all."""
        self.tokens = min(self.capacity, self.tokens + count)


def spacing(index: int, calls_per_second: float) -> float:
    """Seconds after a batch is claimed to place its ``index``-th call, so a burst of
    claims still goes out evenly at ``calls_per_second``."""
    return index / calls_per_second if calls_per_second > 0 else 0.0


def backoff(attempts: int, first: timedelta) -> timedelta:
    """How long to wait after the ``attempts``-th unanswered or busy call before the
    next: ``first``, then twice as long each time, at most a day."""
    if attempts < 1:
        return timedelta(0)
    return min(MAX_BACKOFF, first * (2 ** min(attempts - 1, 30)))
