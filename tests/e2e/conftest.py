"""A platform on loopback: simulated OpenAI server, the app, a temporary agents folder."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.stack import local_server, simulated_settings

AGENT_NUMBER = "+15555550100"

AGENT_YAML = """\
name: front-desk
model: openai/gpt-realtime
voice: marin
prompt: You answer the phone for a clinic. The caller is {{{{caller_number}}}}.
greeting: Thanks for calling the clinic, how can I help?
phone_numbers: ["+15555550100"]
limits:
  max_call_seconds: {max_call_seconds}
tools:
  - type: webhook
    name: check_availability
    description: Look up free appointment slots.
    url: {tool_url}
    allow_private_network: true
    timeout_seconds: 2
    parameters:
      type: object
      properties:
        day: {{type: string}}
  - type: end_call
  - type: transfer_call
    destinations:
      reception: "+15555550199"
"""


def write_agent(directory: Path, *, tool_url: str = "http://127.0.0.1:9/none",
                max_call_seconds: int = 600) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "front-desk.yaml").write_text(
        AGENT_YAML.format(tool_url=tool_url, max_call_seconds=max_call_seconds)
    )


class Platform:
    def __init__(self, tmp_path: Path, sim: OpenAIRealtimeServer) -> None:
        self.tmp_path = tmp_path
        self.sim = sim
        self.agents_dir = tmp_path / "agents"
        self.database_url = f"sqlite:///{tmp_path / 'calls.db'}"

    def settings(self, **overrides):
        return simulated_settings(agents_dir=self.agents_dir, database_url=self.database_url,
                                  openai_url=self.sim.url, **overrides)

    def server(self, **overrides):
        return local_server(self.settings(**overrides))

    def engine(self):
        return make_engine(self.database_url)


@pytest.fixture
def new_platform(tmp_path):
    """Build a platform around a simulator configured by the test."""

    def build(sim: OpenAIRealtimeServer, **agent) -> Platform:
        write_agent(tmp_path / "agents", **agent)
        return Platform(tmp_path, sim)

    return build


def dedent(text: str) -> str:
    return textwrap.dedent(text)


async def closed_call_record(server, engine, timeout: float = 5.0):
    """The one call's record, once the server has closed it (hang-up is asynchronous)."""
    async with asyncio.timeout(timeout):
        while True:
            await server.platform.writer.flush()
            [call] = queries.list_calls(engine)
            if call.end_reason is not None:
                return queries.get_call(engine, call.id)
            await asyncio.sleep(0.05)
