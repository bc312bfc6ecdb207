"""Which keys an agent needs that this server lacks: its model's provider key and, when
it runs the cascade, its speech services' keys. Named as the environment variables an
admin sets; shown on the new-agent and numbers screens and in the start-up log."""

from __future__ import annotations

from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.errors import CatalogError


def missing_keys(spec: AgentSpec, catalog: Catalog, settings: Settings) -> list[str]:
    """The settings (upper-case) this agent needs that are empty here."""
    needed: list[str] = []
    try:
        needed.append(catalog.model(spec.model).provider.key_setting)
        if not spec.voice_streaming:
            needed.append(catalog.stt_service(spec.cascade.stt.service).key_setting)
            needed.append(catalog.tts_service(spec.cascade.tts.service).key_setting)
    except (CatalogError, AttributeError):
        return ["(a model or service this server's catalog lacks)"]
    return sorted({s.upper() for s in needed if s and not getattr(settings, s, "")})
