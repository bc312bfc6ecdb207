"""The campaign queue with no Redis: one process ticks the runner itself.

All state is in the database, so a restart loses nothing: at start, claims left by
the previous process (it was the only one) are taken back at once. Each claim is
dialed in its own task after its pacing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agentplatform.campaigns.runner import CampaignRunner
from agentplatform.campaigns.store import Claim

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
STOP_WAIT_SECONDS = 10.0


class LocalQueue:
    def __init__(self, runner: CampaignRunner, *, tick_seconds: float = TICK_SECONDS) -> None:
        self.runner = runner
        self.tick_seconds = tick_seconds
        self._loop_task: asyncio.Task[None] | None = None
        self._dials: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.Task[None]] = set()  # not dialing yet: safe to drop

    async def start(self) -> None:
        recovered = await self.runner.recover_all_but_mine()
        if recovered:
            log.info("campaigns: took back %d claims left by a previous process", recovered)
        self._loop_task = asyncio.create_task(self._run(), name="campaign-queue")

    async def _run(self) -> None:
        while True:
            try:
                for claim in await self.runner.tick():
                    task = asyncio.create_task(self._dial(claim))
                    self._dials.add(task)
                    self._waiting.add(task)
                    task.add_done_callback(self._dials.discard)
                    task.add_done_callback(self._waiting.discard)
            except Exception:
                log.exception("campaign tick failed; trying again")
            await asyncio.sleep(self.tick_seconds)

    async def _dial(self, claim: Claim) -> None:
        if claim.delay:
            await asyncio.sleep(claim.delay)
        current = asyncio.current_task()
        if current is not None:
            self._waiting.discard(current)
        try:
            await self.runner.dial_contact(claim.contact_id, claim.token)
        except Exception:
            log.exception("campaign dial of contact %d failed", claim.contact_id)

    async def stop(self) -> None:
        """No new ticks; dials under way finish (each is bounded by the dial timeout),
        those still waiting for their slot are dropped and taken back at next start."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._waiting):
            task.cancel()
        if self._dials:
            _, late = await asyncio.wait(list(self._dials), timeout=STOP_WAIT_SECONDS)
            for task in late:
                task.cancel()  # recovered at next start as an interrupted attempt
