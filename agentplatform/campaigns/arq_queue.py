"""The campaign queue over Redis (``REDIS_URL``), on arq: every server process runs
a worker, so a campaign's calls are placed by whichever process is free.

* ``campaign_tick`` is an arq cron job, once a second, ``unique``: one process of
  the fleet runs each second's tick (arq dedupes the job by its fire time). The
  tick claims contacts in the database (``store.claim_due``) and enqueues one
  ``campaign_dial`` job per claim, deferred by its pacing delay, under a job id
  made of the contact and claim token, so a claim is enqueued once.
* ``campaign_dial`` runs on any worker; it places the call only after the
  database says the claim is still ours, undialed and the campaign running, so a
  job that runs twice (arq retries a job whose worker died) never dials twice, and
  a paused campaign's queued jobs dial nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from agentplatform.campaigns.runner import CampaignRunner

log = logging.getLogger(__name__)

QUEUE_NAME = "agentplatform:campaigns"
EVERY_SECOND = set(range(60))
DIAL_JOB = "campaign_dial"


async def campaign_tick(ctx: dict[str, Any]) -> int:
    runner: CampaignRunner = ctx["runner"]
    claims = await runner.tick()
    for claim in claims:
        await ctx["redis"].enqueue_job(DIAL_JOB, claim.contact_id, claim.token,
                                       _job_id=f"campaign-dial:{claim.contact_id}:{claim.token}",
                                       _defer_by=claim.delay or None)
    return len(claims)


async def campaign_dial(ctx: dict[str, Any], contact_id: int, token: str) -> str | None:
    runner: CampaignRunner = ctx["runner"]
    return await runner.dial_contact(contact_id, token)


class ArqQueue:
    def __init__(self, runner: CampaignRunner, redis_url: str) -> None:
        self.runner = runner
        self.redis_url = redis_url
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # arq logs every job at INFO: a tick a second would drown the server's log.
        logging.getLogger("arq").setLevel(logging.WARNING)
        self._worker = Worker(
            functions=[func(campaign_dial, name=DIAL_JOB, max_tries=1)],  # type: ignore[arg-type]
            cron_jobs=[cron(campaign_tick, name="campaign_tick",  # type: ignore[arg-type]
                            second=EVERY_SECOND, unique=True, keep_result=5,
                            run_at_startup=False, max_tries=1)],
            redis_settings=RedisSettings.from_dsn(self.redis_url), queue_name=QUEUE_NAME,
            handle_signals=False, ctx={"runner": self.runner}, poll_delay=0.2,
            keep_result=60, max_jobs=50, log_results=False,
        )
        self._task = asyncio.create_task(self._worker.async_run(), name="campaign-worker")
        self._task.add_done_callback(_report_exit)

    async def stop(self) -> None:
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.runner.let_ringing_go()


def _report_exit(task: asyncio.Task[None]) -> None:
    """The worker ends only when stopped; anything else (Redis unreachable at start)
    leaves campaigns undialed by this process, which the log must say."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the campaign queue stopped: %s; this process dials no campaign calls "
                  "until it is restarted", task.exception())
