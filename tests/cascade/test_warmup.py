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
