"""Concurrency leases and daily counters, the same contract on every store."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine

from agentplatform.limits.store import DatabaseLimitStore, LimitStore, utc_day
from agentplatform.storage.models import utcnow


def test_slots_are_taken_up_to_the_limit_and_given_back_on_release(store: LimitStore) -> None:
    assert store.acquire("agent:a", "CA1", 2, 30)
    assert store.acquire("agent:a", "CA2", 2, 30)
    assert not store.acquire("agent:a", "CA3", 2, 30)
    assert store.active("agent:a") == 2
    # Scopes are independent.
    assert store.acquire("agent:b", "CA3", 2, 30)
    store.release("agent:a", "CA1")
    assert store.acquire("agent:a", "CA3", 2, 30)
    assert store.active("agent:a") == 2


def test_acquiring_again_for_the_same_call_does_not_take_a_second_slot(store: LimitStore) -> None:
    assert store.acquire("agent:a", "CA1", 1, 30)
    assert store.acquire("agent:a", "CA1", 1, 30)  # the webhook reserved, the stream claims
    assert store.active("agent:a") == 1
    assert not store.acquire("agent:a", "CA2", 1, 30)


def test_a_slot_nobody_renews_frees_itself_after_the_lease(store: LimitStore) -> None:
    assert store.acquire("agent:a", "dead-process-call", 1, 0.3)
    assert not store.acquire("agent:a", "CA2", 1, 30)
    time.sleep(0.5)
    assert store.active("agent:a") == 0
    assert store.acquire("agent:a", "CA2", 1, 30)


def test_a_renewed_slot_outlives_its_first_lease(store: LimitStore) -> None:
    assert store.acquire("agent:a", "CA1", 1, 0.6)
    for _ in range(3):
        time.sleep(0.3)
        assert store.renew([("agent:a", "CA1")], 0.6) >= 0
    assert store.active("agent:a") == 1
    assert not store.acquire("agent:a", "CA2", 1, 30)


def test_release_holder_frees_a_reservation_without_knowing_its_scope(store: LimitStore) -> None:
    assert store.acquire("agent:a", "CA1", 1, 30)
    store.release_holder("CA1")
    assert store.active("agent:a") == 0


def test_daily_counter_stops_at_the_limit_per_key_and_day(store: LimitStore) -> None:
    day = utc_day()
    assert store.count_if_below("caller:a:+1555", day, 2)
    assert store.count_if_below("caller:a:+1555", day, 2)
    assert not store.count_if_below("caller:a:+1555", day, 2)
    assert store.count("caller:a:+1555", day) == 2
    assert store.count_if_below("caller:a:+1666", day, 2)
    assert store.count_if_below("caller:a:+1555", "2000-01-01", 2)


def test_racing_threads_never_take_more_slots_than_the_limit(store: LimitStore) -> None:
    # Twenty calls arrive at once (as from several processes); exactly five get in.
    barrier = threading.Barrier(20)

    def attempt(i: int) -> bool:
        barrier.wait()
        return store.acquire("agent:race", f"CA{i}", 5, 30)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert sum(results) == 5
    assert store.active("agent:race") == 5


def test_racing_threads_never_count_past_the_daily_cap(store: LimitStore) -> None:
    barrier = threading.Barrier(12)

    def attempt(_: int) -> bool:
        barrier.wait()
        return store.count_if_below("caller:race:+1555", "2030-01-01", 3)

    with ThreadPoolExecutor(12) as pool:
        assert sum(pool.map(attempt, range(12))) == 3


def test_database_store_judges_expiry_by_its_clock(sqlite_engine: Engine) -> None:
    now = [utcnow()]
    store = DatabaseLimitStore(sqlite_engine, clock=lambda: now[0])
    assert store.acquire("agent:a", "CA1", 1, 60)
    now[0] += timedelta(seconds=59)
    assert not store.acquire("agent:a", "CA2", 1, 60)
    now[0] += timedelta(seconds=2)
    assert store.acquire("agent:a", "CA2", 1, 60)
