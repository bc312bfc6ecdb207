"""The campaign queue inside a server process: started and stopped by the app's
lifespan, dialing through the platform's dial service (``agentplatform/outbound``).

``REDIS_URL`` set: the arq queue, shared by every process of the fleet. Unset: the
single-process in-database queue. Either way ``make run`` needs nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine

from agentplatform.campaigns.runner import CampaignRunner, Dial
from agentplatform.campaigns.store import DialTicket
from agentplatform.carriers.dialing import MachineDetection

if TYPE_CHECKING:
    from agentplatform.app import Platform

log = logging.getLogger(__name__)


class CampaignQueue(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def platform_dial(platform: Platform) -> Dial:
    """Campaign calls go through the dial service like any other: the same checks,
    spend controls (budgets, the agent's concurrency) and records."""
    from agentplatform.outbound import DialRefusal, DialRefused, DialRequest

    async def dial(ticket: DialTicket) -> str:
        if platform.dialer is None:
            raise DialRefused(DialRefusal.CARRIER_UNAVAILABLE, "outbound dialing is not set up")
        return await platform.dialer.dial(DialRequest(
            agent=ticket.agent, to_number=ticket.to_number, from_number=ticket.from_number,
            carrier=ticket.carrier, params=ticket.params,
            machine_detection=MachineDetection(ticket.machine_detection),
            voicemail_message=ticket.voicemail_message, campaign_id=ticket.campaign_id))

    return dial


def agent_limits(platform: Platform) -> Mapping[str, int | None]:
    """Each loaded agent's ``max_concurrent_calls``: a campaign never claims more."""
    return {name: loaded.spec.limits.max_concurrent_calls
            for name, loaded in platform.store.agents.items()}


async def start_campaign_queue(platform: Platform, engine: Engine,
                               dial: Dial | None = None) -> CampaignQueue:
    drain = platform.admission.drain if platform.admission is not None else None
    runner = CampaignRunner(engine, dial or platform_dial(platform),
                            agent_limits=lambda: agent_limits(platform),
                            accepting=lambda: drain is None or not drain.draining)
    queue: CampaignQueue
    if platform.settings.redis_url:
        from agentplatform.campaigns.arq_queue import ArqQueue

        queue = ArqQueue(runner, platform.settings.redis_url)
        log.info("campaigns: queue on Redis (arq), shared by every server process")
    else:
        from agentplatform.campaigns.local_queue import LocalQueue

        queue = LocalQueue(runner)
        log.info("campaigns: in-database queue in this process (set REDIS_URL to share "
                 "campaigns across several processes)")
    await queue.start()
    return queue
