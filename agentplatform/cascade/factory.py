"""From an agent to its cascade: pick the engines its file names, open nothing yet.

The engines are chosen by data: ``cascade.stt`` / ``cascade.tts`` name services in the
catalog, and the text step follows ``open_text_session``'s rules (an explicit
chat-completions endpoint, the local provider's endpoint or rules responder, or the
agent's realtime model in text modality). Calls reach it through ``models.open_model``,
which imports it only when an agent needs the cascade.
"""

from __future__ import annotations

import httpx

from agentplatform.agents.spec import AgentSpec
from agentplatform.cascade.capacity import CASCADE_CAPACITY, uses_local_engines
from agentplatform.cascade.session import CascadeParts, CascadeSession
from agentplatform.cascade.turn_end import HANGOVERS, TurnEndPolicy
from agentplatform.catalog import Catalog, Model
from agentplatform.config import Settings
from agentplatform.realtime.base import SessionSetup, ToolSpec
from agentplatform.speech.stt import build_stt
from agentplatform.speech.tts import build_tts
from agentplatform.speech.vad import SileroVad
from agentplatform.text.sessions import open_text_session


def open_cascade(
    agent: AgentSpec, model: Model, *, catalog: Catalog, settings: Settings,
    http: httpx.AsyncClient, instructions: str, tools: list[ToolSpec],
) -> CascadeSession:
    """Build (not connect) the cascade serving ``agent`` with ``model`` as its text step."""
    cascade = agent.cascade
    turn = agent.turn_detection
    # semantic_vad: the words heard in a pause set its hangover (turn_end.py); the
    # detector holds a pause until they are in.
    policy = (TurnEndPolicy(HANGOVERS[turn.eagerness], turn.silence_duration_ms)
              if turn.type == "semantic_vad" else None)
    parts = CascadeParts(
        # The model serving this call may be a fallback: the text step follows it.
        text=open_text_session(agent.model_copy(update={"model": model.id}),
                               instructions=instructions, tools=tools,
                               catalog=catalog, settings=settings, http=http),
        stt=build_stt(cascade.stt.service, cascade.stt.model, cascade.stt.language,
                      catalog=catalog, settings=settings, http=http),
        tts=build_tts(cascade.tts.service, cascade.tts.voice, cascade.tts.model,
                      catalog=catalog, settings=settings, http=http,
                      instructions=cascade.tts.instructions),
        vad=SileroVad(threshold=turn.threshold, prefix_padding_ms=turn.prefix_padding_ms,
                      silence_duration_ms=(policy.undecided_ms if policy
                                           else turn.silence_duration_ms)),
        turn_end=policy,
    )
    setup = SessionSetup(model=model.wire_name, instructions=instructions, tools=tools,
                         output_modality="text")
    # Counted against the local engines' capacity (admission refuses past it).
    return CascadeSession(setup, parts,
                          capacity=CASCADE_CAPACITY if uses_local_engines(agent) else None)
