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
IDLE_TICK_SECONDS = 1.0  # while no campaign runs: outcomes of paused ones still settle
STOP_WAIT_SECONDS = 10.0


class LocalQueue:
    def __init__(self, runner: CampaignRunner, *, tick_seconds: float = TICK_SECONDS) -> None:
        self.runner = runner
        self.tick_seconds = tick_seconds
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._dials: set[asyncio.Task[None]] = set()
        # Claims not dialed yet (waiting for their pacing slot): given back at stop.
        self._waiting: dict[asyncio.Task[None], Claim] = {}

    async def start(self) -> None:
        recovered = await self.runner.recover_all_but_mine()
        if recovered:
            log.info("campaigns: took back %d claims left by a previous process", recovered)
        self._loop_task = asyncio.create_task(self._run(), name="campaign-queue")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                for claim in await self.runner.tick():
                    task = asyncio.create_task(self._dial(claim))
                    self._dials.add(task)
                    self._waiting[task] = claim
                    task.add_done_callback(self._dials.discard)
                    task.add_done_callback(lambda t: self._waiting.pop(t, None))
            except Exception:
                log.exception("campaign tick failed; trying again")
            pause = self.tick_seconds if self.runner.campaigns_running \
                else max(self.tick_seconds, IDLE_TICK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def _dial(self, claim: Claim) -> None:
        if claim.delay:
            await asyncio.sleep(claim.delay)
        current = asyncio.current_task()
        if current is not None:
            self._waiting.pop(current, None)
        try:
            await self.runner.dial_contact(claim.contact_id, claim.token)
        except Exception:
            log.exception("campaign dial of contact %d failed", claim.contact_id)

    async def stop(self) -> None:
        """No new ticks (one under way finishes, so no claim is left half made); claims
        still waiting for their pacing slot are given back; dials under way finish
        (each bounded by the dial timeout), or are cut after ``STOP_WAIT_SECONDS`` and
        taken back at the next start as interrupted attempts."""
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
        waiting, self._waiting = self._waiting, {}
        for task in waiting:
            task.cancel()
        for claim in waiting.values():
            await self.runner.give_back(claim)
        if self._dials:
            _, late = await asyncio.wait(list(self._dials), timeout=STOP_WAIT_SECONDS)
            for task in late:
                task.cancel()
        await self.runner.let_ringing_go()
