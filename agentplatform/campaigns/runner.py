"""The campaign runner: one tick decides, one dial per claimed contact places.

Both queues (``local_queue`` without Redis, ``arq_queue`` over it) drive these two
steps; they differ only in who calls ``tick`` and where each ``dial`` runs. Every
database step runs in a worker thread; the event loop only awaits the dialer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine

from agentplatform.campaigns import store
from agentplatform.campaigns.store import Claim, DialTicket, TickReport
from agentplatform.storage.models import utcnow

log = logging.getLogger(__name__)

# Placing a call returns once the carrier has it (Twilio: REST accepted; SIP: INVITE
# sent); one that takes longer is counted failed, well inside the claim's lease.
DIAL_TIMEOUT = 60.0


class Dial(Protocol):
    """Places one campaign call; returns the platform call id, whose record will say
    how it ended. Raises an exception with ``reason`` (and ``message``) when refused:
    the dial service's ``DialRefused`` (``outbound/dialer.py``), whose reasons
    ``store.dial_refused`` sorts into the number's fault and the campaign's."""

    async def __call__(self, ticket: DialTicket) -> str: ...


class CampaignRunner:
    def __init__(self, engine: Engine, dial: Dial, *,
                 agent_limits: Callable[[], Mapping[str, int | None]] = dict,
                 accepting: Callable[[], bool] = lambda: True,
                 clock: Callable[[], datetime] = utcnow, owner: str | None = None) -> None:
        """``accepting`` false (the server is draining): this process claims and
        dials nothing more, gives back claims it holds, and still records outcomes."""
        self.engine = engine
        self.dial = dial
        self.agent_limits = agent_limits
        self.accepting = accepting
        self.clock = clock
        # Who holds this runner's claims: one per runner, so a restarted server (even
        # in the same interpreter, as in tests) never mistakes old claims for its own.
        self.owner = owner or store.new_owner()
        self.campaigns_running = 0  # as of the last tick

    async def tick(self) -> list[Claim]:
        """Settle, recover, complete, claim; returns the claims this process made."""
        limits = dict(self.agent_limits())  # read on the loop: the agent store is not threadsafe
        report: TickReport = await asyncio.to_thread(
            store.tick, self.engine, self.clock(), owner=self.owner, agent_limits=limits,
            claim=self.accepting())
        self.campaigns_running = report.running
        if report.settled or report.recovered or report.completed:
            log.info("campaigns: %d outcomes recorded, %d claims recovered, completed %s",
                     report.settled, report.recovered, report.completed or "none")
        return report.claims

    async def recover_all_but_mine(self) -> int:
        """At the start of a single-process queue: every claim is a dead process's."""
        return await asyncio.to_thread(store.recover, self.engine, self.clock(),
                                       not_mine_of=self.owner)

    async def let_ringing_go(self) -> None:
        """At stop, after the last dial: numbers this process is still ringing will
        be tried again (``store.interrupt_ringing``)."""
        count = await asyncio.to_thread(store.interrupt_ringing, self.engine, self.owner,
                                        self.clock())
        if count:
            log.info("campaigns: %d calls still ringing at stop will be tried again", count)

    async def give_back(self, claim: Claim) -> None:
        """A claim this process will not dial (it is stopping): pending again."""
        await asyncio.to_thread(store.release_claim, self.engine, claim.contact_id,
                                claim.token, self.clock())

    async def dial_contact(self, contact_id: int, token: str) -> str | None:
        """Place the call for one claim, unless the claim is gone or the campaign is no
        longer running; returns the call id when a call was placed."""
        if not self.accepting():
            await asyncio.to_thread(store.release_claim, self.engine, contact_id, token,
                                    self.clock())
            return None
        ticket = await asyncio.to_thread(store.start_dial, self.engine, contact_id, token,
                                         self.clock(), self.owner)
        if ticket is None:
            return None
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                call_id = await self.dial(ticket)
        except Exception as exc:  # noqa: BLE001 - a refusal, or any fault: recorded, not raised
            reason = str(getattr(exc, "reason", "failed"))
            message = str(getattr(exc, "message", "") or exc or type(exc).__name__)
            if isinstance(exc, TimeoutError):
                message = f"placing the call took over {DIAL_TIMEOUT:.0f} s"
            log.info("campaign %s: %s not dialed: %s (%s)", ticket.campaign_id,
                     ticket.to_number, reason, message)
            await asyncio.to_thread(store.dial_refused, self.engine, contact_id, token,
                                    reason, message, self.clock())
            return None
        await asyncio.to_thread(store.dial_placed, self.engine, contact_id, token, call_id,
                                self.clock())
        return call_id
