"""OpenAI speech (``POST /v1/audio/speech``) behind the ``TextToSpeech`` seam.

The request asks for ``response_format="pcm"``: raw PCM16 mono at 24 kHz with no
container, so bytes can be played the moment they arrive. The answer is streamed
(chunked transfer); every chunk is yielded as it comes, except that an odd trailing
byte is held until its partner arrives, so a consumer only ever sees whole samples.
Closing the iterator closes the response, which stops the server's work too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from agentplatform.catalog import TtsService
from agentplatform.config import Settings
from agentplatform.errors import ModelError
from agentplatform.speech.engines import service_key, service_url
from agentplatform.speech.openai_http import TIMEOUT, raise_for_status, unreachable

PATH = "/v1/audio/speech"
MAX_INPUT_CHARS = 4096  # OpenAI's documented limit per request
NO_INSTRUCTIONS = frozenset({"tts-1", "tts-1-hd"})  # models that reject voice instructions


class OpenAITextToSpeech:
    """One engine per call; requests go through the platform's shared HTTP client."""

    def __init__(self, service: TtsService, *, voice: str, model: str, settings: Settings,
                 http: httpx.AsyncClient, api_key: str | None = None,
                 instructions: str | None = None, **_: object) -> None:
        self.service = service
        self.voice = voice
        self.model = model
        self.instructions = instructions
        self.output_rate = service.output_rate
        self.url = service_url(service, settings) + PATH
        self._key = service_key(service, settings, api_key)
        self._http = http

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body for ``text`` (public so tests and logs can show it)."""
        body: dict[str, Any] = {"model": self.model, "input": text, "voice": self.voice,
                                "response_format": "pcm"}
        if self.instructions and self.model not in NO_INSTRUCTIONS:
            body["instructions"] = self.instructions
        return body

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        if len(text) > MAX_INPUT_CHARS:
            raise ModelError(
                f"{self.service.label} takes at most {MAX_INPUT_CHARS} characters per request, "
                f"got {len(text)}; speak it sentence by sentence")
        carry = b""
        try:
            async with self._http.stream(
                "POST", self.url, json=self.request_body(text), timeout=TIMEOUT,
                headers={"Authorization": f"Bearer {self._key}"},
            ) as response:
                if response.status_code >= 400:
                    raise_for_status(self.service.label, response.status_code,
                                     await response.aread())
                async for chunk in response.aiter_bytes():
                    data = carry + chunk
                    whole = len(data) - len(data) % 2
                    carry = data[whole:]
                    if whole:
                        yield data[:whole]
        except httpx.HTTPError as exc:
            raise unreachable(self.service.label, self.url, exc) from exc
