"""From an agent and one of its catalog models to the session that serves a call.

The one place that decides *how* a model is served, so the bridge never does:

* a speech model with a voice of its own → its realtime adapter (``realtime/sessions.py``),
  taking μ-law 8 kHz as is when the agent asks for G.711 passthrough and the provider
  speaks it, else PCM at the session's own rates;
* anything else (``voice_streaming: false``, or a provider with no voice) → the cascade
  (``cascade/factory.py``): speech-to-text, the model as text, text-to-speech.

The cascade is imported on first use: its speech engines are heavy, most calls never
need them, and the bridge then imports nothing of the cascade at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Catalog, Model
from agentplatform.config import Settings
from agentplatform.realtime.base import AudioFormat, ModelSession, ToolSpec
from agentplatform.realtime.sessions import build_setup, open_session


class ModelDeps(Protocol):
    """What opening a model needs from the server (the bridge's ``CallDeps`` has it)."""

    settings: Settings
    catalog: Catalog
    http: httpx.AsyncClient


@dataclass(frozen=True, slots=True)
class OpenedModel:
    """A built, not yet connected, session and the audio it speaks: ``g711_ulaw`` is
    the call's own μ-law 8 kHz both ways; ``pcm16`` is PCM at the session's
    ``capabilities`` input and output rates."""

    session: ModelSession
    audio_format: AudioFormat


ModelOpener = Callable[..., OpenedModel]
"""``(agent, model, deps, *, instructions, tools) -> OpenedModel``."""


def open_model(agent: AgentSpec, model: Model, deps: ModelDeps, *, instructions: str,
               tools: list[ToolSpec]) -> OpenedModel:
    """Build the session serving ``agent`` with ``model`` (its own or a fallback)."""
    if agent.voice_streaming and model.provider.speech:
        audio_format: AudioFormat = (
            "g711_ulaw" if agent.g711_passthrough and model.provider.g711 else "pcm16")
        setup = build_setup(agent, model, deps.settings, instructions=instructions,
                            tools=tools, audio_format=audio_format, output_modality="audio")
        return OpenedModel(open_session(model, setup), audio_format)
    from agentplatform.cascade.factory import open_cascade

    cascade = open_cascade(agent, model, catalog=deps.catalog, settings=deps.settings,
                           http=deps.http, instructions=instructions, tools=tools)
    return OpenedModel(cascade, "pcm16")
