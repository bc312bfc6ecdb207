"""From an agent and a catalog model to a realtime adapter ``ModelSession``.

Which adapter serves a model is data: the catalog names each provider's wire
protocol, and ``ADAPTERS`` maps a protocol to the class that speaks it. Whether a
call is served by an adapter at all (or by the cascade) is ``models.open_model``'s
choice; chat and the text step use these builders directly.
"""

from __future__ import annotations

import importlib
import ssl
from functools import lru_cache
from typing import Any

from agentplatform.agents import envpolicy
from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Model
from agentplatform.config import Settings
from agentplatform.errors import CredentialsError
from agentplatform.realtime.base import (
    AudioFormat,
    HistoryItem,
    ModelSession,
    SessionSetup,
    ToolSpec,
)

ADAPTERS: dict[str, str] = {
    "openai_realtime": "agentplatform.realtime.openai_realtime:OpenAIRealtimeSession",
    "xai_realtime": "agentplatform.realtime.xai_realtime:XaiRealtimeSession",
    "gemini_live": "agentplatform.realtime.gemini_live:GeminiLiveSession",
    "nova_sonic": "agentplatform.realtime.nova_sonic:NovaSonicSession",
}


def adapter_class(protocol: str) -> type[ModelSession]:
    module_name, _, class_name = ADAPTERS[protocol].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def resolve_api_key(agent: AgentSpec, model: Model, settings: Settings) -> str:
    """The agent's own key when it names one, else the platform key for the provider."""
    if agent.credentials.api_key_env:
        key = envpolicy.read_allowed(agent.credentials.api_key_env, settings,
                                     field="credentials.api_key_env")
        if not key:
            raise CredentialsError(
                f"agent {agent.name!r} names ${agent.credentials.api_key_env} for its "
                f"{model.provider.label} key, but it is not set"
            )
        return key
    key = getattr(settings, model.provider.key_setting, "") if model.provider.key_setting else ""
    if not key:
        raise CredentialsError(
            f"no {model.provider.label} key: set {model.provider.key_setting.upper()} "
            f"or credentials.api_key_env in agent {agent.name!r}"
        )
    return key


def resolve_url(agent: AgentSpec, model: Model, settings: Settings) -> str:
    override = getattr(settings, model.provider.url_setting, "") if model.provider.url_setting else ""
    if agent.credentials.endpoint_env:
        override = envpolicy.read_allowed(agent.credentials.endpoint_env, settings,
                                          field="credentials.endpoint_env") or override
    return override or model.provider.url


def build_setup(
    agent: AgentSpec,
    model: Model,
    settings: Settings,
    *,
    instructions: str,
    tools: list[ToolSpec],
    audio_format: AudioFormat = "pcm16",
    output_modality: str = "audio",
    history: list[HistoryItem] | None = None,
) -> SessionSetup:
    provider = model.provider
    extra: dict[str, Any] = {
        name: getattr(settings, field_name, "")
        for name, field_name in provider.extra_settings.items()
    }
    if settings.provider_ca_file:
        extra["ssl"] = _provider_tls(settings.provider_ca_file)
    if agent.credentials.endpoint_env and "endpoint" in extra:
        extra["endpoint"] = envpolicy.read_allowed(
            agent.credentials.endpoint_env, settings, field="credentials.endpoint_env",
        ) or extra["endpoint"]
    return SessionSetup(
        model=model.wire_name,
        instructions=instructions,
        voice=agent.voice or provider.default_voice,
        max_output_tokens=agent.max_output_tokens,
        temperature=agent.temperature,
        turn_detection=agent.turn_detection.model_dump(),
        tools=tools,
        audio_format=audio_format,
        output_modality=output_modality,  # type: ignore[arg-type]
        advanced=dict(agent.advanced.get(provider.advanced_key, {})),
        url=resolve_url(agent, model, settings),
        api_key=resolve_api_key(agent, model, settings),
        auth=provider.auth,
        extra=extra,
        history=list(history or []),
    )


@lru_cache(maxsize=4)
def _provider_tls(ca_file: str) -> ssl.SSLContext:
    """The default trust store plus ``ca_file``; built once, shared by every call."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context


def open_session(model: Model, setup: SessionSetup) -> ModelSession:
    """Build (not connect) the adapter for ``model``."""
    return adapter_class(model.provider.protocol)(setup)
