"""xAI's Grok voice agent: the OpenAI Realtime protocol with a few differences, as data.

What differs from the GA OpenAI dialect:
- the first server event is ``conversation.created`` (not ``session.created``);
- the session has no ``type``; ``voice``, ``turn_detection``, ``instructions`` and
  ``tools`` sit at the top level, only the audio formats stay under ``audio``;
- voices are ara (default), eve, rex, sal, leo; advanced JSON lives under ``xai_realtime``;
- only audio output: a text-modality agent is refused earlier, by agent validation.
Events are GA-named; the adapter also accepts the beta-style text delta names.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agentplatform.realtime import openai_events as wire
from agentplatform.realtime.base import SessionSetup
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession

XAI_ADVANCED_KEY = "xai_realtime"
XAI_VOICES = ("ara", "eve", "rex", "sal", "leo")


def xai_turn_detection(td: dict[str, Any] | None) -> dict[str, Any] | None:
    """Server VAD with the agent's thresholds; xAI documents no semantic VAD."""
    wire_td = wire.turn_detection(td)
    if wire_td is None:
        return None
    fields = ("threshold", "prefix_padding_ms", "silence_duration_ms")
    return {"type": "server_vad", **{k: wire_td[k] for k in fields if k in wire_td}}


def build_xai_session(setup: SessionSetup) -> dict[str, Any]:
    """The ``session`` object of xAI's ``session.update``, advanced JSON merged last."""
    fmt = wire.audio_format(setup.audio_format)
    session: dict[str, Any] = {
        "instructions": setup.instructions,
        "turn_detection": xai_turn_detection(setup.turn_detection),
        "audio": {"input": {"format": fmt}, "output": {"format": dict(fmt)}},
    }
    if setup.voice:
        session["voice"] = setup.voice
    if setup.tools:
        session["tools"] = wire.tools_config(setup.tools)
    return wire.deep_merge(session, wire.advanced_overrides(setup.advanced, XAI_ADVANCED_KEY))


class XaiRealtimeSession(OpenAIRealtimeSession):
    """A live call with an xAI voice agent model."""

    first_event = "conversation.created"
    advanced_key = XAI_ADVANCED_KEY

    def __init__(self, setup: SessionSetup, **options: Any) -> None:
        super().__init__(setup, **options)
        self.capabilities = replace(self.capabilities, text_modality=False)

    def build_session(self) -> dict[str, Any]:
        return build_xai_session(self.setup)

    def turn_detection_of(self, session: dict[str, Any]) -> dict[str, Any] | None:
        return session.get("turn_detection")
