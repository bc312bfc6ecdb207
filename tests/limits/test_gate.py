"""The gate's decisions: budgets from recorded cost, slots, caps, and failing open."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from agentplatform.agents.spec import AgentSpec, Limits
from agentplatform.config import Settings
from agentplatform.limits.gate import CallGate
from agentplatform.limits.store import DatabaseLimitStore
from agentplatform.records import EndReason
from agentplatform.storage.models import Call, utcnow


def _settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, agents_dir=Path("agents"), **overrides)  # type: ignore[call-arg]


def _agent(name: str = "front-desk", **limits: object) -> AgentSpec:
    return AgentSpec(name=name, limits=Limits(**limits))


def _spend(engine: Engine, agent: str, usd: float) -> None:
    with Session(engine) as session:
        session.add(Call(id=uuid.uuid4().hex, carrier_call_id="CA" + uuid.uuid4().hex,
                         agent=agent, model="openai/gpt-realtime",
                         requested_model="openai/gpt-realtime", cost_usd=usd,
                         started_at=utcnow()))
        session.commit()


def _gate(engine: Engine, **settings: object) -> CallGate:
    return CallGate(DatabaseLimitStore(engine), engine, _settings(**settings))


async def test_agent_budget_refuses_once_todays_cost_reaches_it(sqlite_engine: Engine) -> None:
    gate = _gate(sqlite_engine)
    agent = _agent(daily_budget_usd=0.50)
    _spend(sqlite_engine, "front-desk", 0.30)
    _spend(sqlite_engine, "other-agent", 5.00)  # someone else's spend does not count
    assert await gate.admit("CA1", agent, "+1555") is None
    _spend(sqlite_engine, "front-desk", 0.20)
    refusal = await gate.admit("CA2", agent, "+1555")
    assert refusal is not None and refusal.reason is EndReason.OVER_BUDGET
    assert "$0.5000 of its $0.50" in refusal.detail


async def test_platform_budget_counts_every_agent(sqlite_engine: Engine) -> None:
    gate = _gate(sqlite_engine, platform_daily_budget_usd=1.0)
    _spend(sqlite_engine, "a", 0.6)
    assert await gate.admit("CA1", _agent("b"), "+1555") is None
    _spend(sqlite_engine, "c", 0.4)
    refusal = await gate.admit("CA2", _agent("b"), "+1555")
    assert refusal is not None and refusal.reason is EndReason.OVER_BUDGET
    assert refusal.detail.startswith("platform spent")


async def test_busy_caller_does_not_use_up_a_daily_call(sqlite_engine: Engine) -> None:
    gate = _gate(sqlite_engine)
    agent = _agent(max_concurrent_calls=1, max_calls_per_caller_per_day=1)
    assert await gate.admit("CA1", agent, "+1666") is None
    busy = await gate.admit("CA2", agent, "+1555")
    assert busy is not None and busy.reason is EndReason.BUSY
    assert gate.store.count("caller:front-desk:+1555", _today()) == 0
    await gate.release_unclaimed("CA1")
    assert await gate.admit("CA3", agent, "+1555") is None


async def test_caller_over_the_cap_gives_back_the_slot_it_reserved(sqlite_engine: Engine) -> None:
    gate = _gate(sqlite_engine)
    agent = _agent(max_concurrent_calls=5, max_calls_per_caller_per_day=1)
    assert await gate.admit("CA1", agent, "+1555") is None
    capped = await gate.admit("CA2", agent, "+1555")
    assert capped is not None and capped.reason is EndReason.CALLER_LIMIT
    assert gate.store.active("agent:front-desk") == 1  # only CA1's


async def test_claim_takes_a_slot_for_a_stream_that_skipped_the_webhook(
    sqlite_engine: Engine,
) -> None:
    gate = _gate(sqlite_engine)
    agent = _agent(max_concurrent_calls=1)
    assert await gate.claim("browser-call", agent) is None
    refusal = await gate.claim("CA2", agent)
    assert refusal is not None and refusal.reason is EndReason.BUSY
    await gate.release("browser-call")
    assert await gate.claim("CA2", agent) is None


async def test_leases_of_live_calls_are_renewed_in_the_background(sqlite_engine: Engine) -> None:
    import asyncio

    gate = _gate(sqlite_engine, call_lease_seconds=0.3)
    agent = _agent(max_concurrent_calls=1)
    assert await gate.claim("CA1", agent) is None
    keeper = asyncio.create_task(gate.keep_leases())
    try:
        await asyncio.sleep(0.8)  # well past one lease
        refusal = await gate.claim("CA2", agent)
        assert refusal is not None and refusal.reason is EndReason.BUSY
    finally:
        keeper.cancel()


async def test_an_agent_without_limits_never_touches_the_store(sqlite_engine: Engine) -> None:
    class Exploding(DatabaseLimitStore):
        def acquire(self, *args: object) -> bool:  # type: ignore[override]
            raise AssertionError("store used for an agent without limits")

    gate = CallGate(Exploding(sqlite_engine), sqlite_engine, _settings())
    assert await gate.admit("CA1", _agent(), "+1555") is None
    assert await gate.claim("CA1", _agent()) is None


async def test_a_failing_store_lets_the_call_through_and_counts_the_error(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture,
) -> None:
    class Down(DatabaseLimitStore):
        def acquire(self, *args: object) -> bool:  # type: ignore[override]
            raise ConnectionError("redis is down")

    gate = CallGate(Down(sqlite_engine), sqlite_engine, _settings())
    assert await gate.admit("CA1", _agent(max_concurrent_calls=1), "+1555") is None
    assert gate.errors == 1
    assert "letting the call through" in caplog.text


def _today() -> str:
    from agentplatform.limits.store import utc_day

    return utc_day()
