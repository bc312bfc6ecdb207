"""A Gemini Live (BidiGenerateContent) server for tests and local runs.

Speaks the service's JSON protocol over a real WebSocket (optionally TLS, see
``agentplatform.testing.tls``) at the service's own path, so any client that talks
to Gemini Live (this platform's adapter, the google-genai SDK) can be pointed at it:

- the key comes as ``x-goog-api-key`` or ``?key=``; a wrong one is accepted at the
  upgrade and then closed with 1008 "API key not valid. Please pass a valid API
  key." (our reading of the service; clients must treat both that and an HTTP
  401/403 as a refused key);
- ``setup`` must come first (else close 1007) and is checked: ``models/<id>`` form,
  AUDIO as the only response modality (TEXT closes 1007 "Cannot extract voices from
  a non-audio request.", as native-audio models do), a known voice, a known
  resumption handle; the answer is ``setupComplete``;
- caller audio (16 kHz PCM16) goes through an energy VAD that counts audio time,
  not wall time; the end of an utterance brings ``inputTranscription``, then a
  scripted answer as 24 kHz PCM16 ``modelTurn`` chunks paced at ``speed`` × real
  time with ``outputTranscription``, then ``generationComplete``, ``turnComplete``
  with ``usageMetadata``, and a ``sessionResumptionUpdate`` handle;
- speech over an answer stops it with ``interrupted``; a scripted turn may call a
  tool first and answer after the ``toolResponse``;
- ``go_away()`` warns every open connection and closes it when the time is up;
  resuming with a handle restores the conversation as it was at that handle.

Everything received is recorded, per connection and in order, for assertions.
Each connection costs one coroutine (and one task while answering); answer audio is
one tone chunk encoded once per server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
INPUT_RATE = 16000
OUTPUT_RATE = 24000
VOICES = frozenset(
    v.lower()
    for v in (
        "Achernar Achird Algenib Algieba Alnilam Aoede Autonoe Callirrhoe Charon Despina "
        "Enceladus Erinome Fenrir Gacrux Iapetus Kore Laomedeia Leda Orus Pulcherrima Puck "
        "Rasalgethi Sadachbia Sadaltager Schedar Sulafat Umbriel Vindemiatrix Zephyr "
        "Zubenelgenubi"
    ).split()
)
BAD_KEY = "API key not valid. Please pass a valid API key."
NON_AUDIO = "Cannot extract voices from a non-audio request."
TOKENS_PER_AUDIO_SECOND = 25
_MODEL_RE = re.compile(r"^models/[A-Za-z0-9._-]+$")
# The service answers on every API version; the SDK picks its own default.
_PATH_RE = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.v1(alpha|beta)?\.GenerativeService\.BidiGenerateContent$"
)


@dataclass(slots=True)
class ScriptedTurn:
    """What the simulated model does with one caller turn.

    ``heard`` is the transcription reported for caller audio (text turns report
    their own text). With ``tool`` set, the model first calls that function with
    ``tool_args`` and speaks ``says`` after the tool's response arrives.
    """

    says: str = "Hello! How can I help you today?"
    heard: str = "hello"
    tool: str | None = None
    tool_args: dict[str, Any] = field(default_factory=dict)
    audio_seconds: float | None = None  # default: 60 ms per character of ``says``

    def duration(self) -> float:
        if self.audio_seconds is not None:
            return self.audio_seconds
        return max(0.2, 0.06 * len(self.says))


@dataclass(slots=True)
class SimConnection:
    """What one connection did, for tests to inspect."""

    index: int
    headers: dict[str, str]
    setup: dict[str, Any] | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (user|model, text)
    resumed_with: str | None = None
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    handles_sent: list[str] = field(default_factory=list)
    audio_bytes_in: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class _Phase(StrEnum):
    AWAIT_SETUP = "await_setup"
    READY = "ready"
    CLOSED = "closed"


class _SetupRejected(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class GeminiLiveServer:
    """``async with GeminiLiveServer(api_key="k") as server: ... server.url``."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        script: Sequence[ScriptedTurn] = (),
        ssl_context: ssl.SSLContext | None = None,
        speed: float = 1.0,
        chunk_ms: int = 40,
        vad_threshold: float = 500.0,
        send_handles: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.refuse_key = False
        self.script: list[ScriptedTurn] = list(script)
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.vad_threshold = vad_threshold
        self.send_handles = send_handles
        self.connections: list[SimConnection] = []
        # Ordered log of ("open"|"setup"|"closed", connection index) for ordering checks.
        self.log: list[tuple[str, int]] = []
        self._host = host
        self._ssl = ssl_context
        self._server: Server | None = None
        self._handles: dict[str, list[tuple[str, str]]] = {}
        self._live: dict[int, _Conversation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.chunk_message = _audio_chunk_message(chunk_ms)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> GeminiLiveServer:
        self._server = await serve(
            self._handle,
            self._host,
            0,
            ssl=self._ssl,
            process_request=self._check_path,
            compression=None,
            max_size=16 * 2**20,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self._host}:{self.port}{PATH}"

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every client message, across connections, in arrival order per connection."""
        return [m for conn in self.connections for m in conn.received]

    # ------------------------------------------------------------ fault injection

    async def go_away(self, time_left: str = "1s", close_after: float | None = None) -> None:
        """Send ``goAway`` on every open connection, then close each one when
        ``close_after`` seconds (default: ``time_left``) have passed."""
        delay = _seconds(time_left) if close_after is None else close_after
        for conv in list(self._live.values()):
            await conv.send({"goAway": {"timeLeft": time_left}})
            self._spawn(conv.close_later(delay, 1000, "session expired"))

    async def drop(self, code: int = 1011, reason: str = "Internal error encountered.") -> None:
        """Close every open connection at once, as a service failure would."""
        for conv in list(self._live.values()):
            await conv.ws.close(code, reason)

    # ------------------------------------------------------------ internals

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if not _PATH_RE.match(urlsplit(request.path).path):
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _key_ok(self, request: Request | None) -> bool:
        if request is None or self.refuse_key:
            return False
        key = request.headers.get("x-goog-api-key")
        if key is None:
            key = (parse_qs(urlsplit(request.path).query).get("key") or [None])[0]
        return key == self.api_key

    def next_turn(self) -> ScriptedTurn:
        return self.script.pop(0) if self.script else ScriptedTurn()

    def new_handle(self, history: list[tuple[str, str]]) -> str:
        handle = uuid.uuid4().hex
        self._handles[handle] = list(history)
        return handle

    def restore(self, handle: str) -> list[tuple[str, str]] | None:
        saved = self._handles.get(handle)
        return None if saved is None else list(saved)

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        headers = dict(request.headers.raw_items()) if request is not None else {}
        record = SimConnection(index=len(self.connections), headers=headers)
        self.connections.append(record)
        self.log.append(("open", record.index))
        conv = _Conversation(self, ws, record)
        self._live[record.index] = conv
        try:
            if not self._key_ok(request):
                await ws.close(1008, BAD_KEY)
                return
            await conv.run()
        except ConnectionClosed:
            pass
        finally:
            conv.stop()
            self._live.pop(record.index, None)
            record.close_code = ws.close_code
            record.close_reason = ws.close_reason or ""
            self.log.append(("closed", record.index))
            record.closed.set()


class _Conversation:
    """One connection's protocol state: setup, VAD, the answer in flight."""

    def __init__(
        self, server: GeminiLiveServer, ws: ServerConnection, record: SimConnection
    ) -> None:
        self.server = server
        self.ws = ws
        self.record = record
        self.phase = _Phase.AWAIT_SETUP
        self.silence_ms_needed = 500
        self.speaking = False
        self.silence_ms = 0.0
        self.speech_ms = 0.0
        self.answer: asyncio.Task[None] | None = None
        self.pending_tool: tuple[str, ScriptedTurn] | None = None
        self.resumable = False
        self._handlers = {
            "realtimeInput": self._on_realtime_input,
            "clientContent": self._on_client_content,
            "toolResponse": self._on_tool_response,
        }

    async def run(self) -> None:
        async for raw in self.ws:
            try:
                message = json.loads(raw)
            except ValueError:
                await self.ws.close(1007, "Invalid JSON payload received.")
                return
            if not isinstance(message, dict):
                await self.ws.close(1007, "Invalid JSON payload received.")
                return
            self.record.received.append(message)
            message = camel_keys(message)
            if self.phase is _Phase.AWAIT_SETUP:
                try:
                    self._accept_setup(message)
                except _SetupRejected as exc:
                    await self.ws.close(exc.code, exc.reason)
                    return
                await self._after_setup()
                continue
            for key, value in message.items():
                handler = self._handlers.get(key)
                if handler is None or not isinstance(value, dict):
                    log.debug("gemini sim: skipping unknown message %s", key)
                    continue
                try:
                    await handler(value)
                except (ValueError, TypeError, AttributeError):
                    log.warning("gemini sim: skipping malformed %s", key, exc_info=True)

    def stop(self) -> None:
        self.phase = _Phase.CLOSED
        if self.answer is not None:
            self.answer.cancel()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message))

    async def send_text(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            pass

    async def close_later(self, delay: float, code: int, reason: str) -> None:
        await asyncio.sleep(delay)
        await self.ws.close(code, reason)

    # ------------------------------------------------------------ setup

    def _accept_setup(self, message: dict[str, Any]) -> None:
        setup = message.get("setup")
        if set(message) != {"setup"} or not isinstance(setup, dict):
            raise _SetupRejected(1007, "The first message must be a setup message.")
        if not _MODEL_RE.match(str(setup.get("model", ""))):
            raise _SetupRejected(1007, "Request contains an invalid argument: model must be models/{model}.")
        generation = setup.get("generationConfig") or {}
        modalities = generation.get("responseModalities") or ["AUDIO"]
        if modalities != ["AUDIO"]:
            raise _SetupRejected(1007, NON_AUDIO)
        voice = (
            generation.get("speechConfig", {}).get("voiceConfig", {})
            .get("prebuiltVoiceConfig", {}).get("voiceName")
        )
        if voice is not None and str(voice).lower() not in VOICES:
            raise _SetupRejected(1007, f"Request contains an invalid argument: unknown voice {voice}.")
        aad = (setup.get("realtimeInputConfig") or {}).get("automaticActivityDetection") or {}
        self.silence_ms_needed = int(aad.get("silenceDurationMs", 500))
        resumption = setup.get("sessionResumption")
        self.resumable = isinstance(resumption, dict)
        handle = resumption.get("handle") if self.resumable else None
        if handle:
            history = self.server.restore(str(handle))
            if history is None:
                raise _SetupRejected(1007, "Request contains an invalid argument: unknown session handle.")
            self.record.history = history
            self.record.resumed_with = str(handle)
        self.record.setup = setup
        self.phase = _Phase.READY
        self.server.log.append(("setup", self.record.index))

    async def _after_setup(self) -> None:
        await self.send({"setupComplete": {}})
        await self._send_handle()

    async def _send_handle(self) -> None:
        if self.resumable and self.server.send_handles:
            handle = self.server.new_handle(self.record.history)
            self.record.handles_sent.append(handle)
            await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    # ------------------------------------------------------------ client messages

    async def _on_realtime_input(self, value: dict[str, Any]) -> None:
        audio = value.get("audio")
        if isinstance(audio, dict):
            await self._on_audio(b64decode(str(audio.get("data", ""))))
        if isinstance(value.get("text"), str):
            await self._user_text_turn(value["text"])
        if value.get("audioStreamEnd") and self.speaking:
            await self._end_of_speech()

    async def _on_client_content(self, value: dict[str, Any]) -> None:
        last_user = ""
        for turn in value.get("turns") or ():
            role = "model" if turn.get("role") == "model" else "user"
            text = "".join(p.get("text", "") for p in turn.get("parts") or () if isinstance(p, dict))
            self.record.history.append((role, text))
            if role == "user":
                last_user = text
        if value.get("turnComplete"):
            await self._interrupt()
            self._start_answer(self.server.next_turn(), spoken_input_ms=0.0, heard=last_user)

    async def _user_text_turn(self, text: str) -> None:
        self.record.history.append(("user", text))
        await self._interrupt()
        self._start_answer(self.server.next_turn(), spoken_input_ms=0.0, heard=text)

    async def _on_tool_response(self, value: dict[str, Any]) -> None:
        responses = value.get("functionResponses") or []
        self.record.tool_responses.extend(r for r in responses if isinstance(r, dict))
        if self.pending_tool is None:
            return
        call_id, turn = self.pending_tool
        if any(isinstance(r, dict) and r.get("id") == call_id for r in responses):
            self.pending_tool = None
            self.answer = asyncio.create_task(self._speak(turn, 0.0))

    # ------------------------------------------------------------ VAD

    async def _on_audio(self, pcm: bytes) -> None:
        self.record.audio_bytes_in += len(pcm)
        if len(pcm) < 2:
            return
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
        loud = float(np.sqrt(np.mean(samples * samples))) >= self.server.vad_threshold
        ms = len(samples) * 1000 / INPUT_RATE
        if loud:
            self.silence_ms = 0.0
            if not self.speaking:
                self.speaking = True
                self.speech_ms = 0.0
                await self._interrupt()
            self.speech_ms += ms
        elif self.speaking:
            self.silence_ms += ms
            self.speech_ms += ms
            if self.silence_ms >= self.silence_ms_needed:
                await self._end_of_speech()

    async def _end_of_speech(self) -> None:
        self.speaking = False
        turn = self.server.next_turn()
        await self.send({"serverContent": {"inputTranscription": {"text": turn.heard}}})
        self.record.history.append(("user", turn.heard))
        self._start_answer(turn, spoken_input_ms=self.speech_ms, heard=turn.heard)

    async def _interrupt(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.cancel()
            await asyncio.gather(self.answer, return_exceptions=True)
            await self.send({"serverContent": {"interrupted": True}})
        self.answer = None

    # ------------------------------------------------------------ answering

    def _start_answer(self, turn: ScriptedTurn, *, spoken_input_ms: float, heard: str) -> None:
        if turn.tool:
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            self.pending_tool = (call_id, turn)
            call = {"id": call_id, "name": turn.tool, "args": turn.tool_args}
            self.answer = asyncio.create_task(self.send({"toolCall": {"functionCalls": [call]}}))
            return
        self.answer = asyncio.create_task(self._speak(turn, spoken_input_ms))

    async def _speak(self, turn: ScriptedTurn, spoken_input_ms: float) -> None:
        """Stream the answer at ``speed`` × real time; on cancel, keep what was said."""
        chunk_s = self.server.chunk_ms / 1000
        n_chunks = max(1, math.ceil(turn.duration() / chunk_s))
        words = turn.says.split(" ")
        per_chunk: list[list[str]] = [[] for _ in range(n_chunks)]
        for i, word in enumerate(words):
            per_chunk[i * n_chunks // len(words)].append(word)
        said: list[str] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for k in range(n_chunks):
                if self.server.speed > 0:
                    await asyncio.sleep(max(0.0, start + k * chunk_s / self.server.speed - loop.time()))
                await self.send_text(self.server.chunk_message)
                if per_chunk[k]:
                    text = (" " if said else "") + " ".join(per_chunk[k])
                    said.append(text)
                    await self.send({"serverContent": {"outputTranscription": {"text": text}}})
        finally:
            self.record.history.append(("model", "".join(said)))
        await self.send({"serverContent": {"generationComplete": True}})
        usage = self._usage(spoken_input_ms, n_chunks * chunk_s)
        await self.send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        await self._send_handle()

    def _usage(self, input_ms: float, output_s: float) -> dict[str, Any]:
        """Rough but consistent counts: text at four characters a token, audio at
        25 tokens a second; the whole context is billed again every turn."""
        setup = self.record.setup or {}
        instructions = json.dumps(setup.get("systemInstruction", ""))
        text_in = (len(instructions) + sum(len(t) for _, t in self.record.history)) // 4
        audio_in = int(input_ms * TOKENS_PER_AUDIO_SECOND / 1000)
        audio_out = int(output_s * TOKENS_PER_AUDIO_SECOND)
        return {
            "promptTokenCount": text_in + audio_in,
            "responseTokenCount": audio_out,
            "totalTokenCount": text_in + audio_in + audio_out,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": text_in},
                {"modality": "AUDIO", "tokenCount": audio_in},
            ],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_out}],
        }


def _audio_chunk_message(chunk_ms: int) -> str:
    """One ``modelTurn`` message carrying ``chunk_ms`` of a 440 Hz tone, as JSON text."""
    n = OUTPUT_RATE * chunk_ms // 1000
    t = np.arange(n, dtype=np.float32) / OUTPUT_RATE
    pcm = (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    data = base64.b64encode(pcm).decode("ascii")
    blob = {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": data}
    return json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}]}}})


def b64decode(data: str) -> bytes:
    """Protobuf JSON bytes: standard or URL-safe base64 (the SDK sends the latter),
    padding optional."""
    return base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_", validate=True)


# Fields whose values are the caller's own JSON (a Struct), whose keys stay as sent.
_OPAQUE_FIELDS = frozenset({"response", "args", "properties"})


def camel_keys(value: Any) -> Any:
    """Field names in lowerCamelCase, as a protobuf JSON parser accepts either form.

    The service takes both ``realtime_input`` and ``realtimeInput`` (the google-genai
    SDK sends the first), so the simulator does too.
    """
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        head, *rest = key.split("_")
        name = head + "".join(part[:1].upper() + part[1:] for part in rest)
        out[name] = item if name in _OPAQUE_FIELDS else camel_keys(item)
    return out


def _seconds(duration: str) -> float:
    try:
        return float(duration.rstrip("s"))
    except ValueError:
        return 1.0
