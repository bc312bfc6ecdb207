"""One factory decides how a model serves a call; the bridge only calls it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import agentplatform
from agentplatform.agents.spec import AgentSpec
from agentplatform.cascade.session import CascadeSession
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.models import open_model
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession

PACKAGE = Path(agentplatform.__file__).parent


class Deps:
    def __init__(self) -> None:
        self.settings = Settings(_env_file=None, openai_api_key="sk-test")
        self.catalog = load_catalog()
        self.http = httpx.AsyncClient()


@pytest.fixture
async def deps():
    made = Deps()
    yield made
    await made.http.aclose()


def opened(agent: AgentSpec, deps: Deps):
    return open_model(agent, deps.catalog.model(agent.model), deps,
                      instructions="Be brief.", tools=[])


async def test_a_speech_model_is_served_by_its_adapter_in_pcm(deps) -> None:
    result = opened(AgentSpec(name="a", model="openai/gpt-realtime"), deps)
    assert isinstance(result.session, OpenAIRealtimeSession)
    assert result.audio_format == "pcm16" == result.session.setup.audio_format


async def test_g711_passthrough_is_used_when_the_agent_asks_and_the_provider_speaks_it(
        deps) -> None:
    result = opened(AgentSpec(name="a", model="openai/gpt-realtime", g711_passthrough=True),
                    deps)
    assert result.audio_format == "g711_ulaw" == result.session.setup.audio_format


async def test_an_agent_without_voice_streaming_is_served_by_the_cascade(deps) -> None:
    result = opened(AgentSpec(name="a", model="openai/gpt-realtime", voice_streaming=False,
                              g711_passthrough=True), deps)
    assert isinstance(result.session, CascadeSession)
    assert result.audio_format == "pcm16"


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_bridge_imports_no_carrier_and_no_cascade() -> None:
    imported = _imported_modules(PACKAGE / "bridge" / "call.py")
    assert not {m for m in imported if m.startswith("agentplatform.cascade")}
    carriers = {m for m in imported if m.startswith("agentplatform.carriers")}
    # Only the seam: ``base`` (the call's audio and events) and ``dialing`` (a placed
    # call's request and its answering-machine verdict), never a carrier itself.
    seam = {"agentplatform.carriers.base", "agentplatform.carriers.dialing"}
    assert {m for m in carriers if m not in seam and m.rsplit(".", 1)[0] not in seam} == set(), \
        carriers


@pytest.mark.parametrize("first, second", [("agentplatform.bridge.call", "agentplatform.cascade.session"),
                                           ("agentplatform.cascade.session", "agentplatform.bridge.call")])
def test_bridge_and_cascade_import_in_either_order(first: str, second: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {first}; import {second}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
