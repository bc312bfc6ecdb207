"""From an agent to the ``TextSession`` that answers it in text (cascade and chat).

    agent.cascade.llm set          → ChatCompletionsSession (that endpoint)
    model of the ``local`` provider → ChatCompletionsSession (LOCAL_LLM_URL) if set,
                                     else RulesSession (the offline rules responder)
    model with text modality       → RealtimeTextSession (the agent's realtime model)
    anything else (audio only)     → ModelError: Google and Amazon models only speak
"""

from __future__ import annotations


import httpx

from agentplatform.agents import envpolicy
from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.errors import CredentialsError, ModelError
from agentplatform.realtime.base import ToolSpec
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession
from agentplatform.realtime.sessions import build_setup, open_session
from agentplatform.text.base import TextSession
from agentplatform.text.chat_completions import ChatCompletionsSession
from agentplatform.text.realtime_text import RealtimeTextSession
from agentplatform.text.rules import RulesSession

# The catalog provider whose text step is local (an endpoint by setting, or the rules).
LOCAL_PROVIDER = "local"


def open_text_session(
    agent: AgentSpec,
    *,
    instructions: str,
    tools: list[ToolSpec],
    catalog: Catalog,
    settings: Settings,
    http: httpx.AsyncClient | None = None,
) -> TextSession:
    """Build (not connect) the text session that serves ``agent``.

    Raises ``CredentialsError`` when a key the choice needs is missing, and
    ``ModelError`` for a model that only produces audio.
    """
    common = {"instructions": instructions, "tools": tools, "temperature": agent.temperature,
              "max_output_tokens": agent.max_output_tokens, "http": http}
    endpoint = agent.cascade.llm
    if endpoint is not None:
        api_key = ""
        if endpoint.api_key_env:
            api_key = envpolicy.read_allowed(endpoint.api_key_env, settings,
                                             field="cascade.llm.api_key_env")
            if not api_key:
                raise CredentialsError(
                    f"agent {agent.name!r} names ${endpoint.api_key_env} for its chat "
                    f"endpoint key (cascade.llm.api_key_env), but it is not set")
        return ChatCompletionsSession(url=endpoint.url, model=endpoint.model, api_key=api_key,
                                      **common)
    model = catalog.model(agent.model)
    if model.provider.name == LOCAL_PROVIDER:
        if settings.local_llm_url:
            return ChatCompletionsSession(url=settings.local_llm_url,
                                          model=settings.local_llm_model,
                                          api_key=settings.local_llm_api_key, **common)
        return RulesSession(agent.rules, agent.fallback_reply, instructions=instructions)
    if not model.text_modality:
        raise ModelError(
            f"{model.id} ({model.provider.label}) only produces audio, so it cannot answer "
            "in text; pick an OpenAI or Azure OpenAI model, or set cascade.llm to a "
            "chat-completions endpoint")
    setup = build_setup(agent, model, settings, instructions=instructions, tools=tools,
                        output_modality="text")
    # Our own VAD and STT find the turns; the server must not wait for audio.
    setup.turn_detection = {"type": "none"}
    adapter = open_session(model, setup)
    if not isinstance(adapter, OpenAIRealtimeSession):
        raise ModelError(f"{model.id}: its adapter cannot run in text modality")
    return RealtimeTextSession(adapter)
