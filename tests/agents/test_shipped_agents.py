"""The example agents shipped in the repository's agents/ folder must always validate."""

from __future__ import annotations

from pathlib import Path

from agentplatform.agents.commands import validate_all
from agentplatform.agents.store import AgentStore
from agentplatform.agents.yamlio import dump_document, load_document
from agentplatform.catalog import Catalog
from agentplatform.config import Settings

SHIPPED = Path(__file__).resolve().parents[2] / "agents"


def test_shipped_agents_validate_with_no_errors_and_no_keys(catalog: Catalog,
                                                            settings: Settings) -> None:
    code, text = validate_all(SHIPPED, catalog, settings, environ={})
    assert code == 0, text
    store = AgentStore(SHIPPED, catalog, settings, environ={})
    assert store.problems == {}
    assert len(store.agents) >= 1


def test_front_desk_runs_offline_on_the_cascade_with_rules(catalog: Catalog,
                                                           settings: Settings) -> None:
    agent = AgentStore(SHIPPED, catalog, settings, environ={}).get("front-desk")
    assert agent is not None
    spec = agent.spec
    assert spec.model == "local/offline" and spec.voice_streaming is False
    assert (spec.cascade.stt.service, spec.cascade.tts.service) == ("local", "local")
    assert spec.greeting and spec.rules and spec.fallback_reply
    assert "+15555550100" in spec.phone_numbers
    rule_tools = {rule.tool.name for rule in spec.rules if rule.tool}
    assert rule_tools <= {tool.name for tool in spec.tools}


def test_realtime_front_desk_example_shows_every_tool_kind(catalog: Catalog,
                                                           settings: Settings) -> None:
    agent = AgentStore(SHIPPED, catalog, settings, environ={}).get("front-desk-realtime")
    assert agent is not None
    assert agent.spec.model == "openai/gpt-realtime" and agent.spec.voice == "marin"
    assert agent.spec.greeting
    assert "+15555550102" in agent.spec.phone_numbers
    kinds = {tool.type: tool for tool in agent.spec.tools}
    assert set(kinds) == {"webhook", "end_call", "transfer_call"}
    assert kinds["webhook"].name == "check_availability"
    assert kinds["webhook"].url.startswith("https://")
    assert kinds["webhook"].allow_private_network is False


def test_shipped_files_survive_a_round_trip_unchanged() -> None:
    for path in sorted(SHIPPED.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert dump_document(load_document(text, file=str(path))) == text, path
