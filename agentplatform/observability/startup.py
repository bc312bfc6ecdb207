"""The start-up log's roll call: each agent, the numbers it answers and whether the
keys it needs are set, so a misconfigured agent shows before its first call fails."""

from __future__ import annotations

import logging

from agentplatform.agents.keys import missing_keys
from agentplatform.agents.store import AgentStore
from agentplatform.catalog import Catalog
from agentplatform.config import Settings

log = logging.getLogger("agentplatform.startup")


def announce_agents(store: AgentStore, catalog: Catalog, settings: Settings) -> list[str]:
    """Log one line per agent (and one when there are none); returns the lines."""
    lines = []
    for agent in sorted(store.agents.values(), key=lambda a: a.name):
        numbers = ", ".join(agent.spec.phone_numbers) or "no numbers"
        missing = missing_keys(agent.spec, catalog, settings)
        keys = f"missing {', '.join(missing)}" if missing else "keys present"
        lines.append(f"agent {agent.name}: {agent.spec.model}, {numbers}; {keys}")
    if not lines:
        lines.append(f"no agents in {settings.agents_dir}: calls to any number are refused")
    for line in lines:
        (log.warning if "missing" in line or line.startswith("no agents") else log.info)(line)
    return lines
