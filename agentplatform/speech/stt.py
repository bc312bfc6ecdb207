"""The speech-to-text seam of the cascade, and the factory that picks an engine.

The cascade hands an engine one whole utterance (the VAD has already found where the
caller stopped), so the seam is a single awaitable call rather than a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import httpx

from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.speech.engines import engine_class

ENGINES: dict[str, str] = {
    "faster_whisper": "agentplatform.speech.stt_local:WhisperSpeechToText",
    "openai_transcription": "agentplatform.speech.stt_openai:OpenAISpeechToText",
}


@dataclass(slots=True)
class Transcription:
    text: str
    audio_seconds: float
    model: str
    # What the service billed, flattened: ``seconds`` or ``input_tokens``,
    # ``audio_tokens``, ``text_tokens``, ``output_tokens``, ``total_tokens``.
    usage: dict[str, float] = field(default_factory=dict)


class SpeechToText(Protocol):
    async def transcribe(self, pcm16: bytes, rate: int) -> Transcription:
        """The text of one utterance of PCM16 mono at ``rate`` Hz."""
        ...


def build_stt(service: str, model: str | None, language: str | None, *, catalog: Catalog,
              settings: Settings, http: httpx.AsyncClient,
              api_key: str | None = None) -> SpeechToText:
    """The engine for catalog STT ``service`` with ``model`` (its default if None).

    Raises CatalogError naming what exists for an unknown service, model or language,
    and CredentialsError when a cloud service has no key.
    """
    entry = catalog.stt_service(service)
    cls = engine_class(ENGINES, entry.engine, "STT")
    return cls(entry, model=entry.model(model), language=entry.language(language),
               settings=settings, http=http, api_key=api_key)
