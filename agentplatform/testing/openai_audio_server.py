"""A protocol-faithful OpenAI audio API (transcriptions, speech) on a real loopback port.

Why: the cascade's cloud engines must be tested over real HTTP — multipart uploads,
bearer keys, JSON errors, chunked streaming — without a network or a key. The audio
is real both ways: transcription runs the local Whisper engine on the uploaded WAV,
and speech is the local Piper voice, resampled to 24 kHz PCM16 as OpenAI's ``pcm``
format is, streamed in chunks whose sizes deliberately split samples (a real
connection gives no promise of whole samples per chunk).

    async with OpenAIAudioServer(api_key="k") as server:
        ...POST server.url + "/v1/audio/transcriptions"...
        server.requests   # every request, with its fields, as the server parsed it

What is checked, as OpenAI does: the bearer key (401 ``invalid_api_key``), the model
(400 naming it), required fields, ``response_format`` and ``voice`` values, the input
length. Only ``json``/``text`` transcripts and ``pcm``/``wav`` speech are rendered; other
formats the real API has are refused with a 400 saying the simulator lacks them.
"""

from __future__ import annotations

import asyncio
import io
import math
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from agentplatform.audio.wav import resample_whole
from agentplatform.speech.stt_local import transcribe_sync
from agentplatform.speech.tts_local import synthesize_sentences, voice_rate
from agentplatform.testing.loopback import LoopbackServer

TRANSCRIBE_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                     "gpt-4o-mini-transcribe-2025-12-15", "whisper-1")
TRANSCRIBE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
SPEECH_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
                 "marin", "cedar", "fable", "onyx", "nova")
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SPEECH_FIELDS = frozenset({"input", "model", "voice", "instructions", "response_format",
                           "speed", "stream_format"})
SPEECH_RATE = 24000  # OpenAI's pcm: 24 kHz, 16-bit signed little-endian, mono
MAX_INPUT_CHARS = 4096
AUDIO_TOKENS_PER_SECOND = 10  # an approximation of gpt-4o audio tokenisation


@dataclass(slots=True)
class AudioRequest:
    """One request as the server saw it."""

    path: str
    authorization: str
    fields: dict[str, Any]  # form fields (transcriptions) or the JSON body (speech)
    file_name: str = ""
    file_type: str = ""
    file_bytes: bytes = b""
    status: int = 0


@dataclass(slots=True)
class _Refusal(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"

    def response(self) -> Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}
        return Response(orjson.dumps(body), status_code=self.status,
                        media_type="application/json")


def _wav_pcm(data: bytes) -> tuple[bytes, int]:
    """PCM16 mono and its rate from a WAV upload; a 400 for anything else."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise _Refusal(400, "The simulator decodes only mono 16-bit PCM WAV files.",
                               "file", "invalid_value")
            return wav.readframes(wav.getnframes()), wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise _Refusal(400, "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', "
                       "'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
                       "file", "invalid_value") from exc


class OpenAIAudioServer:
    """``/v1/audio/transcriptions`` and ``/v1/audio/speech`` served by uvicorn on 127.0.0.1."""

    def __init__(self, *, api_key: str = "test-key", speech_chunk_bytes: int = 2401) -> None:
        self.api_key = api_key
        self.speech_chunk_bytes = speech_chunk_bytes  # odd on purpose: splits samples
        self.requests: list[AudioRequest] = []
        self.port = 0
        self._loopback: LoopbackServer | None = None
        self.app = Starlette(routes=[
            Route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", self._speech, methods=["POST"]),
        ])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- the two endpoints -------------------------------------------------------------

    async def _transcriptions(self, request: Request) -> Response:
        record = AudioRequest(path=request.url.path,
                              authorization=request.headers.get("authorization", ""), fields={})
        self.requests.append(record)
        try:
            self._check_key(record.authorization)
            async with request.form() as form:
                upload = form.get("file")
                record.fields = {k: v for k, v in form.multi_items() if k != "file"}
                if isinstance(upload, UploadFile):
                    record.file_name = upload.filename or ""
                    record.file_type = upload.content_type or ""
                    record.file_bytes = await upload.read()
            response = await self._transcribe(record, upload)
        except _Refusal as refusal:
            response = refusal.response()
        record.status = response.status_code
        return response

    async def _transcribe(self, record: AudioRequest, upload: object) -> Response:
        fields = record.fields
        model = fields.get("model")
        if not isinstance(upload, UploadFile):
            raise _Refusal(400, "'file' is a required property", "file")
        if not model:
            raise _Refusal(400, "'model' is a required property", "model")
        if model not in TRANSCRIBE_MODELS:
            raise _Refusal(400, f"Invalid model {model!r}. The model must be one of "
                           f"{', '.join(TRANSCRIBE_MODELS)}.", "model", "invalid_value")
        fmt = fields.get("response_format", "json")
        if fmt not in TRANSCRIBE_FORMATS:
            raise _Refusal(400, f"Invalid value for 'response_format': {fmt!r}.",
                           "response_format", "invalid_value")
        if model != "whisper-1" and fmt not in ("json", "text"):
            raise _Refusal(400, f"response_format '{fmt}' is not compatible with model "
                           f"'{model}'. Use 'json' or 'text'.", "response_format",
                           "unsupported_value")
        if fmt not in ("json", "text"):
            raise _Refusal(400, f"The simulator renders only json and text, not {fmt!r}.",
                           "response_format", "unsupported_value")
        language = fields.get("language")
        if language is not None and (len(language) != 2 or not language.isalpha()):
            raise _Refusal(400, f"Invalid language {language!r}. Language parameter must be "
                           "specified in ISO-639-1 format.", "language", "invalid_language_format")
        pcm, rate = _wav_pcm(record.file_bytes)
        if len(pcm) < rate * 2 // 10:  # OpenAI refuses clips under 0.1 s
            raise _Refusal(400, "Audio file is too short. Minimum audio length is 0.1 seconds.",
                           "file", "audio_too_short")
        text = await asyncio.to_thread(transcribe_sync, pcm, rate, language)
        if fmt == "text":
            return PlainTextResponse(text + "\n")
        seconds = len(pcm) / 2 / rate
        if model == "whisper-1":
            usage: dict[str, Any] = {"type": "duration", "seconds": math.ceil(seconds)}
        else:
            audio_tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
            output_tokens = max(1, math.ceil(len(text) / 4))
            usage = {"type": "tokens", "input_tokens": audio_tokens,
                     "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                     "output_tokens": output_tokens,
                     "total_tokens": audio_tokens + output_tokens}
        return Response(orjson.dumps({"text": text, "usage": usage}),
                        media_type="application/json")

    async def _speech(self, request: Request) -> Response:
        record = AudioRequest(path=request.url.path,
                              authorization=request.headers.get("authorization", ""), fields={})
        self.requests.append(record)
        try:
            self._check_key(record.authorization)
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                raise _Refusal(400, "We could not parse the JSON body of your request.") from exc
            if not isinstance(body, dict):
                raise _Refusal(400, "The request body must be a JSON object.")
            record.fields = body
            text, fmt = self._check_speech(body)
            response: Response = StreamingResponse(
                self._speak(text, fmt), media_type="audio/pcm" if fmt == "pcm" else "audio/wav")
        except _Refusal as refusal:
            response = refusal.response()
        record.status = response.status_code
        return response

    def _check_speech(self, body: dict[str, Any]) -> tuple[str, str]:
        unknown = sorted(set(body) - SPEECH_FIELDS)
        if unknown:
            raise _Refusal(400, f"Unrecognized request argument supplied: {unknown[0]}")
        for name in ("model", "input", "voice"):
            if name not in body:
                raise _Refusal(400, f"'{name}' is a required property", name)
        if body["model"] not in SPEECH_MODELS:
            raise _Refusal(400, f"Invalid model {body['model']!r}. The model must be one of "
                           f"{', '.join(SPEECH_MODELS)}.", "model", "invalid_value")
        if not isinstance(body["input"], str) or not body["input"].strip():
            raise _Refusal(400, "'input' must be a non-empty string.", "input")
        if len(body["input"]) > MAX_INPUT_CHARS:
            raise _Refusal(400, f"'input' is longer than {MAX_INPUT_CHARS} characters.",
                           "input", "string_above_max_length")
        voice = body["voice"]
        voice_id = voice.get("id") if isinstance(voice, dict) else voice
        if voice_id not in SPEECH_VOICES:
            raise _Refusal(400, f"Invalid value for 'voice': {voice_id!r}. Supported values "
                           f"are: {', '.join(SPEECH_VOICES)}.", "voice", "invalid_value")
        fmt = body.get("response_format", "mp3")
        if fmt not in SPEECH_FORMATS:
            raise _Refusal(400, f"Invalid value for 'response_format': {fmt!r}.",
                           "response_format", "invalid_value")
        if fmt not in ("pcm", "wav"):
            raise _Refusal(400, f"The simulator renders only pcm and wav, not {fmt!r}.",
                           "response_format", "unsupported_value")
        speed = body.get("speed", 1.0)
        if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            raise _Refusal(400, "'speed' must be between 0.25 and 4.0.", "speed")
        return body["input"], fmt

    async def _speak(self, text: str, fmt: str) -> AsyncIterator[bytes]:
        """The voice at 24 kHz, sentence by sentence, cut into ``speech_chunk_bytes``."""
        if fmt == "wav":  # streamed WAV: a header with an unknown (maximal) length
            yield _wav_header(SPEECH_RATE)
        sentences = synthesize_sentences(text)
        pending = b""
        while True:
            pcm = await asyncio.to_thread(next, sentences, None)
            if pcm is None:
                break
            pending += resample_whole(pcm, voice_rate(), SPEECH_RATE)
            size = self.speech_chunk_bytes
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
        if pending:
            yield pending

    def _check_key(self, authorization: str) -> None:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise _Refusal(401, "You didn't provide an API key. You need to provide your API "
                           "key in an Authorization header using Bearer auth (i.e. "
                           "Authorization: Bearer YOUR_KEY).")
        if key != self.api_key:
            shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
            raise _Refusal(401, f"Incorrect API key provided: {shown}. You can find your API "
                           "key at https://platform.openai.com/account/api-keys.",
                           code="invalid_api_key")

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loopback = LoopbackServer(self.app)
        await self._loopback.start()
        self.port = self._loopback.port

    async def stop(self) -> None:
        if self._loopback is not None:
            await self._loopback.stop()

    async def __aenter__(self) -> OpenAIAudioServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _wav_header(rate: int) -> bytes:
    """A mono 16-bit WAV header whose sizes say "until the end of the stream"."""
    data_size = 0xFFFFFFFF - 36
    return (b"RIFF" + (0xFFFFFFFF).to_bytes(4, "little") + b"WAVEfmt "
            + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
            + rate.to_bytes(4, "little") + (rate * 2).to_bytes(4, "little")
            + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
            + b"data" + data_size.to_bytes(4, "little"))
