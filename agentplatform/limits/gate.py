"""The spend-control gate every call passes before a model session opens.

Two checkpoints, because a Twilio call reaches us twice:

* ``admit`` at the voice webhook: budget (agent and platform), the agent's
  concurrency limit (a slot is *reserved* for the CallSid) and the per-caller daily
  cap. A refusal there is answered with TwiML ``<Say>`` — the caller hears why, and
  no stream, let alone a model session, is ever opened.
* ``claim`` at stream start: the reserved slot is taken over by the live call (or
  taken fresh, for streams that did not come through the webhook, such as a test
  call from the browser) and the budget is checked again. A refusal there is ended
  with the carrier's hang-up message, before any model session opens.

Held slots are renewed by one ``keep_leases`` task per process, in one batch; a
process that dies stops renewing and its slots free themselves after
``call_lease_seconds``. Every check runs in a worker thread: the event loop, and
with it every live call's audio, never waits on the database or Redis.

If the counter store itself fails, the call is let through and the failure logged
and counted: a database hiccup should not take the phone line down with it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine

from agentplatform.agents.spec import AgentSpec
from agentplatform.config import Settings
from agentplatform.limits.store import LimitStore, utc_day
from agentplatform.records import EndReason
from agentplatform.storage import queries
from agentplatform.storage.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is not taken, and what the caller is told."""

    reason: EndReason
    message: str
    detail: str


def agent_scope(agent: str) -> str:
    return f"agent:{agent}"


def caller_key(agent: str, number: str) -> str:
    return f"caller:{agent}:{number}"


class CallGate:
    def __init__(self, store: LimitStore, engine: Engine, settings: Settings) -> None:
        self.store = store
        self._engine = engine
        self._settings = settings
        self._held: dict[str, str] = {}  # carrier call id -> scope, slots this process holds
        self.errors = 0  # counter-store failures (the call was let through)

    # ------------------------------------------------------------ the two checkpoints

    async def admit(self, call_sid: str, agent: AgentSpec, from_number: str) -> Refusal | None:
        """At the voice webhook: ``None`` to connect the call, else the refusal."""
        if not _has_limits(agent, self._settings):
            return None
        return await asyncio.to_thread(self._guarded, self._admit, call_sid, agent, from_number)

    async def claim(self, call_sid: str, agent: AgentSpec) -> Refusal | None:
        """At stream start, before the model session: take the call's slot."""
        if not _has_limits(agent, self._settings):
            return None
        refusal = await asyncio.to_thread(self._guarded, self._claim, call_sid, agent)
        if refusal is None and agent.limits.max_concurrent_calls:
            self._held[call_sid] = agent_scope(agent.name)
        return refusal

    async def release(self, call_sid: str) -> None:
        """The call has ended: give its slot back at once (not after the lease)."""
        scope = self._held.pop(call_sid, None)
        if scope is not None:
            await asyncio.to_thread(self._guarded, self.store.release, scope, call_sid)

    async def release_unclaimed(self, call_sid: str) -> None:
        """A call ended before its stream started: free any slot reserved for it."""
        if call_sid not in self._held:
            await asyncio.to_thread(self._guarded, self.store.release_holder, call_sid)

    async def keep_leases(self, stop: asyncio.Event | None = None) -> None:
        """Renew this process's slots every third of a lease, until cancelled."""
        interval = max(self._settings.call_lease_seconds / 3.0, 0.05)
        while True:
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                    return
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(interval)
            held = [(scope, holder) for holder, scope in self._held.items()]
            if held:
                await asyncio.to_thread(self._guarded, self.store.renew, held,
                                        self._settings.call_lease_seconds)

    @property
    def held(self) -> int:
        return len(self._held)

    # ------------------------------------------------------------ checks (worker thread)

    def _admit(self, call_sid: str, agent: AgentSpec, from_number: str) -> Refusal | None:
        refusal = self._over_budget(agent)
        if refusal is not None:
            return refusal
        limits = agent.limits
        scope = agent_scope(agent.name)
        reserved = False
        if limits.max_concurrent_calls:
            if not self.store.acquire(scope, call_sid, limits.max_concurrent_calls,
                                      self._settings.call_lease_seconds):
                return self._busy(agent)
            reserved = True
        if limits.max_calls_per_caller_per_day and from_number:
            cap = limits.max_calls_per_caller_per_day
            if not self.store.count_if_below(caller_key(agent.name, from_number), utc_day(), cap):
                if reserved:
                    self.store.release(scope, call_sid)
                return Refusal(EndReason.CALLER_LIMIT, self._settings.caller_cap_message,
                               f"{from_number} reached max_calls_per_caller_per_day {cap}")
        return None

    def _claim(self, call_sid: str, agent: AgentSpec) -> Refusal | None:
        refusal = self._over_budget(agent)
        limits = agent.limits
        if refusal is not None:
            self.store.release(agent_scope(agent.name), call_sid)
            return refusal
        if limits.max_concurrent_calls and not self.store.acquire(
            agent_scope(agent.name), call_sid, limits.max_concurrent_calls,
            self._settings.call_lease_seconds,
        ):
            return self._busy(agent)
        return None

    def _over_budget(self, agent: AgentSpec) -> Refusal | None:
        today = utcnow().date()
        budget = agent.limits.daily_budget_usd
        if budget is not None:
            spent = queries.cost_on_day(self._engine, today, agent.name)
            if spent >= budget:
                return Refusal(EndReason.OVER_BUDGET, self._settings.over_budget_message,
                               f"agent {agent.name} spent ${spent:.4f} of its "
                               f"${budget:.2f} daily budget")
        platform_budget = self._settings.platform_daily_budget_usd
        if platform_budget is not None:
            spent = queries.cost_on_day(self._engine, today)
            if spent >= platform_budget:
                return Refusal(EndReason.OVER_BUDGET, self._settings.over_budget_message,
                               f"platform spent ${spent:.4f} of its ${platform_budget:.2f} "
                               "daily budget")
        return None

    def _busy(self, agent: AgentSpec) -> Refusal:
        return Refusal(EndReason.BUSY, self._settings.busy_message,
                       f"agent {agent.name} has max_concurrent_calls "
                       f"{agent.limits.max_concurrent_calls} live")

    def _guarded(self, check, *args):  # type: ignore[no-untyped-def]
        try:
            return check(*args)
        except Exception as exc:  # the store is down: let the call through, loudly
            self.errors += 1
            log.error("spend-control check %s failed, letting the call through: %s",
                      getattr(check, "__name__", check), exc)
            return None

    def spent_today(self, agent: str | None = None, day: date | None = None) -> float:
        """Today's cost for ``agent`` (or the platform), as the budget check sees it."""
        return queries.cost_on_day(self._engine, day or utcnow().date(), agent)


def _has_limits(agent: AgentSpec, settings: Settings) -> bool:
    limits = agent.limits
    return bool(limits.max_concurrent_calls or limits.daily_budget_usd is not None
                or limits.max_calls_per_caller_per_day
                or settings.platform_daily_budget_usd is not None)


def open_limit_store(settings: Settings, engine: Engine) -> LimitStore:
    """Redis when ``REDIS_URL`` is set, else the call-record database."""
    if settings.redis_url:
        from agentplatform.limits.redis_store import RedisLimitStore

        return RedisLimitStore(settings.redis_url)
    from agentplatform.limits.store import DatabaseLimitStore

    return DatabaseLimitStore(engine)
