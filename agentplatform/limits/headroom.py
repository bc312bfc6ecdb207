"""Overload shedding: this process takes a new call only while it has room for one more.

A process that takes every call degrades every call together once its core is full:
frames wait in the event loop's ready queue, every caller hears gaps, barge-ins stop
late. So the process measures itself and refuses a new call with the busy message
(``Admission.at_arrival``) when one more would push the live calls past their targets;
the calls already up keep their latency. With several worker processes the next call
lands on another one: ``limits/worker_room.py`` tells each worker which siblings have
room, and a full worker whose streams can be steered stops accepting them meanwhile.

Two measurements, both of this process:

- **Event-loop lag**: a sampler sleeps ``SAMPLE_SECONDS`` and notes how late it woke.
  Lag is the time a frame waits before the bridge even sees it; its p99 over the last
  ``WINDOW_SECONDS`` over ``max_lag_ms`` means the loop is already too busy.
- **CPU**: the event loop's thread's CPU time per wall second (read by the sampler,
  which runs on that thread). Only the loop's own work counts: the offline cascade's
  speech engines run in worker threads that release the interpreter lock and have their
  own cap (``CASCADE_MAX_CALLS``), so a caller talking to the offline desk must not make
  the next call look unaffordable; when those threads do hold the loop back, the lag
  shows it. Each live call costs about
  ``cpu / live`` of a core; a new call is refused when the projected CPU with it (and
  with the calls admitted in the last seconds whose streams are still starting) would
  pass ``max_cpu``. Before any call is up the cost per call is ``PRIOR_CPU_PER_CALL``.

The decision is a pure function of the figures (``decide``), so it is tested
without timing anything. Refusals and the figures are exported on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agentplatform.limits.worker_room import RoomBoard

SAMPLE_SECONDS = 0.005
WINDOW_SECONDS = 2.0
CPU_SECONDS = 0.5  # how often CPU is read
# A bridged call's CPU before any was measured here (10 ms per call-second: the bench's
# figure for this process on a slow shared core, rounded up).
PRIOR_CPU_PER_CALL = 0.010
ARRIVING_SECONDS = 3.0  # an admitted call counts as arriving until its stream is up
PUBLISH_SECONDS = 0.1  # how often a worker tells its siblings whether it has room


@dataclass(frozen=True, slots=True)
class Figures:
    """What the process knows of itself at one moment."""

    lag_p99_ms: float
    cpu: float  # the event loop thread's CPU, in cores (1.0 = its core busy)
    live_calls: int
    arriving_calls: int


@dataclass(frozen=True, slots=True)
class Limits:
    max_lag_ms: float = 10.0
    max_cpu: float = 0.8  # of one core: the rest absorbs bursts (barge-ins, call set-up)
    max_calls: int = 0  # a hard cap per process; 0 = none


def decide(f: Figures, limits: Limits) -> str | None:
    """``None`` to take one more call, else why not (for the log and the record).

    A process with no call live or arriving always takes one: shedding protects live
    calls, and a slow loop with none (start-up, a busy machine) is not theirs to blame."""
    if not f.live_calls and not f.arriving_calls:
        return None
    if limits.max_calls and f.live_calls + f.arriving_calls >= limits.max_calls:
        return f"process at its cap of {limits.max_calls} calls"
    if limits.max_lag_ms and f.lag_p99_ms > limits.max_lag_ms:
        return f"event-loop lag p99 {f.lag_p99_ms:.1f} ms over {limits.max_lag_ms:g} ms"
    if limits.max_cpu:
        per_call = f.cpu / f.live_calls if f.live_calls else PRIOR_CPU_PER_CALL
        per_call = max(per_call, PRIOR_CPU_PER_CALL / 4)
        projected = f.cpu + per_call * (f.arriving_calls + 1)
        if projected > limits.max_cpu:
            return (f"CPU {f.cpu:.2f} of a core, {projected:.2f} with one more call, "
                    f"over {limits.max_cpu:g}")
    return None


class Headroom:
    """Samples this process's loop lag and CPU; answers whether one more call fits."""

    def __init__(self, limits: Limits, live_calls: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time,
                 board: RoomBoard | None = None, index: int = 0) -> None:
        self.limits = limits
        # Under ``serve --workers``: the siblings' room, and this worker's place on it.
        self._board, self._index = board, index
        # Set by whoever can send new streams to a sibling (the media listener, which
        # stops accepting); told of every change through ``watch``.
        self.steerable = False
        self.accepting = True
        self._watchers: list[Callable[[bool], None]] = []
        self._live_calls = live_calls
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._lags: deque[tuple[float, float]] = deque()  # (at, lag ms)
        self._arrivals: deque[float] = deque()
        self._cpu = 0.0
        self._task: asyncio.Task[None] | None = None
        self.shed = 0  # calls refused for want of headroom
        self.steered = 0  # calls taken while full, their streams left to a sibling
        self.last_reason = ""

    @property
    def enabled(self) -> bool:
        return bool(self.limits.max_lag_ms or self.limits.max_cpu or self.limits.max_calls)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._sample(), name="headroom-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def watch(self, callback: Callable[[bool], None]) -> None:
        """``callback(accepting)`` whenever this worker starts or stops taking new
        streams for its siblings' sake."""
        self._watchers.append(callback)

    def publish(self) -> None:
        """Tell the siblings whether one more call fits here; stop accepting new
        streams while it does not and a sibling has room (if streams can be steered)."""
        full = self.enabled and decide(self.figures(), self.limits) is not None
        if self._board is not None:
            self._board.mark(self._index, not full)
        accepting = not (full and self._can_steer())
        if accepting != self.accepting:
            self.accepting = accepting
            for callback in self._watchers:
                callback(accepting)

    def _can_steer(self) -> bool:
        return (self.steerable and self._board is not None
                and self._board.others_with_room(self._index) > 0)

    async def _sample(self) -> None:
        cpu_at, cpu0 = self._clock(), self._cpu_clock()
        published_at = cpu_at
        while True:
            before = self._clock()
            await asyncio.sleep(SAMPLE_SECONDS)
            now = self._clock()
            self.note_lag(now, max(0.0, (now - before - SAMPLE_SECONDS) * 1000.0))
            if now - cpu_at >= CPU_SECONDS:
                cpu1 = self._cpu_clock()
                self._cpu = (cpu1 - cpu0) / (now - cpu_at)
                cpu_at, cpu0 = now, cpu1
            if now - published_at >= PUBLISH_SECONDS:
                published_at = now
                self.publish()

    def note_lag(self, at: float, lag_ms: float) -> None:
        self._lags.append((at, lag_ms))
        while self._lags and self._lags[0][0] < at - WINDOW_SECONDS:
            self._lags.popleft()

    def figures(self) -> Figures:
        now = self._clock()
        while self._arrivals and self._arrivals[0] < now - ARRIVING_SECONDS:
            self._arrivals.popleft()
        lags = sorted(lag for _, lag in self._lags)
        p99 = lags[min(len(lags) - 1, int(0.99 * (len(lags) - 1)))] if lags else 0.0
        return Figures(lag_p99_ms=p99, cpu=self._cpu, live_calls=self._live_calls(),
                       arriving_calls=len(self._arrivals))

    def admit(self) -> str | None:
        """``None`` and the call counts as arriving; else why it is refused."""
        if not self.enabled:
            return None
        reason = decide(self.figures(), self.limits)
        if reason is None:
            self._arrivals.append(self._clock())
            return None
        self.publish()
        if self._can_steer():
            # A sibling has room and this worker no longer accepts streams: the call's
            # stream lands there, so the caller is not refused.
            self.steered += 1
            return None
        self.shed += 1
        self.last_reason = reason
        return reason


class HeadroomCollector(Collector):
    """``/metrics``: the figures the decision uses, and how many calls it shed."""

    def __init__(self, headroom: Headroom) -> None:
        self._headroom = headroom

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        h = self._headroom
        f = h.figures()
        yield GaugeMetricFamily("agentplatform_event_loop_lag_p99_seconds",
                                "Event-loop lag p99 over the last seconds, this process.",
                                value=f.lag_p99_ms / 1000.0)
        yield GaugeMetricFamily("agentplatform_event_loop_cpu_cores",
                                "CPU the event loop's thread used per wall second "
                                "(1 = one core), this process.",
                                value=f.cpu)
        yield GaugeMetricFamily("agentplatform_overloaded",
                                "1 while this process would refuse a new call for want of "
                                "headroom.", value=float(h.enabled and decide(f, h.limits) is not None))
        yield CounterMetricFamily("agentplatform_calls_shed",
                                  "Calls refused with the busy message because one more would "
                                  "have pushed the live calls past their latency targets.",
                                  value=h.shed)
        yield CounterMetricFamily("agentplatform_calls_steered",
                                  "Calls taken while this worker was full, their streams left "
                                  "to a sibling worker with room.", value=h.steered)
        yield GaugeMetricFamily("agentplatform_accepting_streams",
                                "0 while this worker leaves new streams to a sibling with room.",
                                value=float(h.accepting))
