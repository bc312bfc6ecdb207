"""Latency figures measured inside the server, on the monotonic clock.

Kept in fixed-size rings of floats (milliseconds) so a long-running server never
grows; the benchmark reads percentiles over HTTP from the process under test.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field


@dataclass(slots=True)
class Ring:
    size: int = 200_000
    values: array = field(default_factory=lambda: array("d"))
    _next: int = 0
    count: int = 0

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            self.values[self._next] = value
            self._next = (self._next + 1) % self.size

    def percentiles(self, *points: float) -> dict[str, float]:
        data = sorted(self.values)
        if not data:
            return {f"p{p:g}": 0.0 for p in points}
        return {
            f"p{p:g}": data[min(len(data) - 1, int(round(p / 100.0 * (len(data) - 1))))]
            for p in points
        }

    def clear(self) -> None:
        self.values = array("d")
        self._next = 0
        self.count = 0


@dataclass(slots=True)
class BridgeMetrics:
    inbound_ms: Ring = field(default_factory=Ring)  # carrier frame received → sent to model
    outbound_ms: Ring = field(default_factory=Ring)  # model audio received → sent to carrier
    barge_in_ms: Ring = field(default_factory=Ring)  # speech start received → clear sent
    active_calls: int = 0
    calls_total: int = 0
    truncates: int = 0
    truncates_clamped: int = 0  # estimate exceeded what was sent and was cut back

    def snapshot(self) -> dict[str, object]:
        return {
            "active_calls": self.active_calls,
            "calls_total": self.calls_total,
            "truncates": self.truncates,
            "truncates_clamped": self.truncates_clamped,
            "inbound_ms": {"count": self.inbound_ms.count, **self.inbound_ms.percentiles(50, 99, 99.9)},
            "outbound_ms": {"count": self.outbound_ms.count, **self.outbound_ms.percentiles(50, 99, 99.9)},
            "barge_in_ms": {"count": self.barge_in_ms.count, **self.barge_in_ms.percentiles(50, 99, 100)},
        }

    def reset(self) -> None:
        self.inbound_ms.clear()
        self.outbound_ms.clear()
        self.barge_in_ms.clear()
        self.truncates = self.truncates_clamped = 0


METRICS = BridgeMetrics()
