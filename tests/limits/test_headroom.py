"""Overload shedding: a process refuses a new call once one more would push its live
calls past their targets, tells the caller it is busy, and counts it on /metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from sqlalchemy import Engine

from agentplatform.agents.spec import AgentSpec
from agentplatform.config import Settings
from agentplatform.limits.admission import Admission
from agentplatform.limits.drain import Drain
from agentplatform.limits.gate import CallGate
from agentplatform.limits.headroom import (
    PRIOR_CPU_PER_CALL,
    Figures,
    Headroom,
    HeadroomCollector,
    Limits,
    decide,
)
from agentplatform.limits.store import DatabaseLimitStore
from agentplatform.observability.metrics import PlatformMetrics
from agentplatform.records import CallStart, EndReason

LIMITS = Limits(max_lag_ms=10.0, max_cpu=0.8)


def test_a_calm_process_takes_the_call() -> None:
    assert decide(Figures(lag_p99_ms=1.0, cpu=0.30, live_calls=30, arriving_calls=0), LIMITS) is None


def test_a_lagging_event_loop_refuses_the_call() -> None:
    why = decide(Figures(lag_p99_ms=12.0, cpu=0.30, live_calls=30, arriving_calls=0), LIMITS)
    assert why is not None and "lag" in why


def test_the_call_that_would_push_cpu_past_the_ceiling_is_refused() -> None:
    # 79 calls at 0.01 core each: one more reaches 0.80 exactly (taken), the next is not.
    assert decide(Figures(lag_p99_ms=1.0, cpu=0.79, live_calls=79, arriving_calls=0), LIMITS) is None
    why = decide(Figures(lag_p99_ms=1.0, cpu=0.80, live_calls=80, arriving_calls=0), LIMITS)
    assert why is not None and "CPU" in why


def test_calls_still_arriving_count_as_load_before_their_cpu_shows() -> None:
    figures = Figures(lag_p99_ms=1.0, cpu=0.50, live_calls=50, arriving_calls=30)
    assert decide(figures, LIMITS) is not None
    assert decide(Figures(lag_p99_ms=1.0, cpu=0.50, live_calls=50, arriving_calls=0), LIMITS) is None


def test_an_idle_process_prices_a_call_at_the_prior() -> None:
    room = int(LIMITS.max_cpu / PRIOR_CPU_PER_CALL)
    assert decide(Figures(0.0, 0.0, 0, room - 1), LIMITS) is None
    assert decide(Figures(0.0, 0.0, 0, room), LIMITS) is not None


def test_the_hard_cap_counts_live_and_arriving_calls() -> None:
    cap = Limits(max_lag_ms=0, max_cpu=0, max_calls=3)
    assert decide(Figures(0.0, 0.0, 2, 0), cap) is None
    assert decide(Figures(0.0, 0.0, 2, 1), cap) is not None


def test_lag_older_than_the_window_is_forgotten() -> None:
    now = [100.0]
    headroom = Headroom(LIMITS, live_calls=lambda: 0, clock=lambda: now[0])
    headroom.note_lag(100.0, 50.0)
    assert headroom.figures().lag_p99_ms == 50.0
    now[0] = 103.0
    headroom.note_lag(103.0, 0.5)
    assert headroom.figures().lag_p99_ms == 0.5


def test_each_admitted_call_counts_as_arriving_until_it_ages_out() -> None:
    now = [0.0]
    headroom = Headroom(Limits(max_lag_ms=0, max_cpu=0, max_calls=2), live_calls=lambda: 0,
                        clock=lambda: now[0])
    assert headroom.admit() is None
    assert headroom.admit() is None
    assert headroom.admit() is not None
    assert headroom.shed == 1
    now[0] = 10.0  # their streams are up (or never came): no longer arriving
    assert headroom.admit() is None


class _Recorder:
    def __init__(self) -> None:
        self.ended: list[tuple[str, EndReason, str]] = []

    def call_started(self, start: CallStart) -> None: ...

    def call_ended(self, call_id: str, reason: EndReason, detail: str = "") -> None:
        self.ended.append((call_id, reason, detail))


async def test_an_overloaded_process_answers_busy_records_it_and_exports_it(
        sqlite_engine: Engine) -> None:
    settings = Settings(_env_file=None, agents_dir=Path("agents"))  # type: ignore[call-arg]
    headroom = Headroom(Limits(max_lag_ms=0, max_cpu=0, max_calls=1), live_calls=lambda: 0)
    metrics = PlatformMetrics()
    metrics.registry.register(HeadroomCollector(headroom))
    recorder = _Recorder()
    admission = Admission(CallGate(DatabaseLimitStore(sqlite_engine), sqlite_engine, settings),
                          Drain("draining", 1.0), recorder, metrics, headroom=headroom,
                          busy_message=settings.busy_message)
    agent = AgentSpec(name="front-desk")

    assert await admission.at_arrival("twilio", "CA1", agent, "+15550001", "+15550100") is None
    said = await admission.at_arrival("twilio", "CA2", agent, "+15550002", "+15550100")

    assert said == settings.busy_message
    assert [(reason, detail.startswith("overloaded")) for _, reason, detail in recorder.ended] \
        == [(EndReason.BUSY, True)]
    exported = generate_latest(metrics.registry).decode()
    assert "agentplatform_calls_shed_total 1.0" in exported
    assert 'agentplatform_calls_refused_total{reason="busy"} 1.0' in exported


def test_a_process_with_no_call_takes_one_however_slow_its_loop() -> None:
    assert decide(Figures(lag_p99_ms=500.0, cpu=0.99, live_calls=0, arriving_calls=0), LIMITS) is None


async def test_cpu_burnt_by_worker_threads_does_not_count_against_the_event_loop() -> None:
    """The offline cascade's speech engines run in worker threads (capped on their own);
    only the event loop's own CPU says whether one more bridged call fits."""
    import asyncio
    import threading
    import time

    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(i * i for i in range(2000))
            time.sleep(0)  # let the loop's thread run between slices

    headroom = Headroom(Limits(max_lag_ms=0.0, max_cpu=0.8), live_calls=lambda: 1)
    burner = threading.Thread(target=burn, daemon=True)
    process_cpu_before = time.process_time()
    burner.start()
    headroom.start()
    try:
        await asyncio.sleep(1.3)
    finally:
        stop.set()
        burner.join()
        await headroom.stop()
    burnt = time.process_time() - process_cpu_before
    assert burnt > 0.4  # the worker really ran: the old whole-process figure saw it
    assert headroom.figures().cpu < 0.25
