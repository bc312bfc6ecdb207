from __future__ import annotations

from agentplatform.agents.spec import AgentSpec
from agentplatform.cascade.warmup import local_engines_in_use
from agentplatform.catalog import load_catalog


def test_only_cascade_agents_on_local_engines_warm_them() -> None:
    catalog = load_catalog()
    realtime = AgentSpec(name="a", model="openai/gpt-realtime")
    offline = AgentSpec(name="b", model="local/offline", voice_streaming=False)
    cloud_ears = AgentSpec(name="c", model="openai/gpt-realtime", voice_streaming=False,
                           cascade={"stt": {"service": "openai"}, "tts": {"service": "local"}})
    assert local_engines_in_use([realtime], catalog) == set()
    assert local_engines_in_use([realtime, offline], catalog) == {"vad", "stt", "tts"}
    assert local_engines_in_use([cloud_ears], catalog) == {"vad", "tts"}


def test_the_front_desks_fixed_lines_are_the_pieces_the_cascade_will_ask_for() -> None:
    from pathlib import Path

    from agentplatform.agents.store import AgentStore
    from agentplatform.cascade.warmup import fixed_lines, spoken_pieces
    from agentplatform.catalog import load_catalog
    from agentplatform.config import Settings

    catalog = load_catalog()
    store = AgentStore(Path(__file__).resolve().parents[2] / "agents", catalog,
                       Settings(_env_file=None), environ={})
    desk = store.get("front-desk").spec
    lines = fixed_lines([desk], catalog)
    for rule in desk.rules:
        assert spoken_pieces(rule.reply)[0] in lines
    assert spoken_pieces("I'm sorry to hear that, let me put you through.") == [
        "I'm sorry to hear that,", "let me put you through."]
    # An agent speaking with a realtime voice has no lines for the local voice.
    realtime = store.get("front-desk-realtime").spec
    assert set(fixed_lines([realtime], catalog)) <= set(fixed_lines([], catalog))
