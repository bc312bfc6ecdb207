"""The text-to-speech seam of the cascade, and the factory that picks an engine.

The cascade speaks sentence by sentence as the text model streams, so an engine's
job is narrow: one piece of text in, PCM16 mono out at ``output_rate`` as soon as it
exists. Closing the iterator early (barge-in) must stop the work behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.speech.engines import engine_class

ENGINES: dict[str, str] = {
    "piper": "agentplatform.speech.tts_local:PiperTextToSpeech",
    "openai_speech": "agentplatform.speech.tts_openai:OpenAITextToSpeech",
}


class TextToSpeech(Protocol):
    output_rate: int

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 mono at ``output_rate``, first chunk as soon as possible; whole samples."""
        ...


def build_tts(service: str, voice: str | None, model: str | None, *, catalog: Catalog,
              settings: Settings, http: httpx.AsyncClient,
              api_key: str | None = None, instructions: str | None = None) -> TextToSpeech:
    """The engine for catalog TTS ``service`` with ``voice``/``model`` (defaults if None).

    ``instructions`` (how to speak) reaches engines that take it and is ignored by the
    rest. Raises CatalogError naming what exists for an unknown service, voice or
    model, and CredentialsError when a cloud service has no key.
    """
    entry = catalog.tts_service(service)
    cls = engine_class(ENGINES, entry.engine, "TTS")
    return cls(entry, voice=entry.voice(voice), model=entry.model(model),
               settings=settings, http=http, api_key=api_key, instructions=instructions)
