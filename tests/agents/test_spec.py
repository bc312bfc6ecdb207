"""The additive parts of AgentSpec: timezone and advanced blocks given as JSON text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentplatform.agents.spec import AgentSpec


def test_timezone_accepts_iana_names() -> None:
    assert AgentSpec(name="a", timezone="Europe/Berlin").timezone == "Europe/Berlin"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", ""])
def test_timezone_rejects_unknown_zones(zone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentSpec(name="a", timezone=zone)
    assert caught.value.errors()[0]["loc"] == ("timezone",)


def test_advanced_block_may_be_a_json_object_string() -> None:
    spec = AgentSpec.model_validate(
        {"name": "a", "advanced": {"openai_realtime": '{"audio": {"output": {"speed": 1.1}}}'}}
    )
    assert spec.advanced == {"openai_realtime": {"audio": {"output": {"speed": 1.1}}}}


@pytest.mark.parametrize(("text", "words"), [("{speed: 1}", "not valid JSON"),
                                              ("[1, 2]", "must be a JSON object")])
def test_advanced_block_string_must_be_a_json_object(text: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentSpec.model_validate({"name": "a", "advanced": {"openai_realtime": text}})
    err = caught.value.errors()[0]
    assert err["loc"] == ("advanced", "openai_realtime")
    assert words in err["msg"]
