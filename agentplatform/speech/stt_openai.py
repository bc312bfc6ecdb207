"""OpenAI transcription (``POST /v1/audio/transcriptions``) behind the ``SpeechToText`` seam.

One utterance, one multipart request: ``file`` (a WAV built in memory from the PCM),
``model``, ``response_format=json`` and ``language`` when the agent names one. The
answer is ``{"text", "usage"}``; usage is tokens for the gpt-4o models and seconds of
audio for whisper-1, flattened into ``Transcription.usage`` for pricing.
"""

from __future__ import annotations

import io
import wave

import httpx
import orjson

from agentplatform.audio.frames import check_pcm16, check_rate
from agentplatform.catalog import SttService
from agentplatform.config import Settings
from agentplatform.errors import ModelError
from agentplatform.speech.engines import service_key, service_url
from agentplatform.speech.openai_http import TIMEOUT, raise_for_status, unreachable
from agentplatform.speech.stt import Transcription

PATH = "/v1/audio/transcriptions"


def wav_bytes(pcm16: bytes, rate: int) -> bytes:
    """A mono 16-bit WAV file of ``pcm16`` at ``rate``, in memory."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16)
    return buffer.getvalue()


def flatten_usage(usage: object) -> dict[str, float]:
    """``usage`` of a transcription, as flat numbers (``seconds`` or token counts)."""
    if not isinstance(usage, dict):
        return {}
    flat: dict[str, float] = {}
    if usage.get("type") == "duration":
        flat["seconds"] = float(usage.get("seconds", 0.0))
        return flat
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        if isinstance(usage.get(key), int | float):
            flat[key] = usage[key]
    details = usage.get("input_token_details")
    if isinstance(details, dict):
        for key in ("audio_tokens", "text_tokens"):
            if isinstance(details.get(key), int | float):
                flat[key] = details[key]
    return flat


class OpenAISpeechToText:
    """One engine per call; requests go through the platform's shared HTTP client."""

    def __init__(self, service: SttService, *, model: str, language: str | None,
                 settings: Settings, http: httpx.AsyncClient, api_key: str | None = None,
                 **_: object) -> None:
        self.service = service
        self.model = model
        self.language = language
        self.url = service_url(service, settings) + PATH
        self._key = service_key(service, settings, api_key)
        self._http = http

    async def transcribe(self, pcm16: bytes, rate: int) -> Transcription:
        check_pcm16(pcm16)
        check_rate(rate)
        seconds = len(pcm16) / 2 / rate
        data = {"model": self.model, "response_format": "json"}
        if self.language:
            data["language"] = self.language
        try:
            response = await self._http.post(
                self.url, data=data, timeout=TIMEOUT,
                files={"file": ("utterance.wav", wav_bytes(pcm16, rate), "audio/wav")},
                headers={"Authorization": f"Bearer {self._key}"})
        except httpx.HTTPError as exc:
            raise unreachable(self.service.label, self.url, exc) from exc
        raise_for_status(self.service.label, response.status_code, response.content)
        try:
            body = orjson.loads(response.content)
            text = body["text"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelError(
                f"{self.service.label} answered without a transcript: {response.content[:200]!r}"
            ) from exc
        return Transcription(text=str(text).strip(), audio_seconds=seconds, model=self.model,
                             usage=flatten_usage(body.get("usage")))
