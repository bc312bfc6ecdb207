"""The agent file's ``recording`` section and the no-input limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentplatform.agents.spec import AgentSpec


def test_recording_is_off_and_idle_prompts_are_off_by_default():
    spec = AgentSpec(name="a")
    assert spec.recording.enabled is False and spec.recording.announce == ""
    assert spec.limits.idle_prompt_seconds is None
    assert spec.limits.idle_prompts_max == 2


def test_recording_with_an_announcement_is_accepted_and_trimmed():
    spec = AgentSpec(name="a", recording={"enabled": True, "announce": " This call may be recorded. "})
    assert spec.recording.announce == "This call may be recorded."


def test_an_announcement_without_recording_is_refused_with_a_clear_error():
    with pytest.raises(ValidationError, match="recording.announce is set but recording.enabled is false"):
        AgentSpec(name="a", recording={"announce": "This call may be recorded."})


@pytest.mark.parametrize("limits", [{"idle_prompt_seconds": 0.5}, {"idle_prompt_seconds": 601},
                                    {"idle_prompts_max": -1}, {"idle_prompts_max": 11}])
def test_idle_limits_out_of_range_are_refused(limits):
    with pytest.raises(ValidationError, match="idle_prompt"):
        AgentSpec(name="a", limits=limits)


def test_an_unknown_recording_key_is_refused():
    with pytest.raises(ValidationError, match="recording.stereo"):
        AgentSpec(name="a", recording={"enabled": True, "stereo": True})
