"""A protocol-faithful OpenAI Realtime (GA) server on a real loopback socket.

Why: the adapter, the bridge and the benchmark need a model that behaves like the real
one — VAD on the caller's audio, paced audio answers, transcripts, tool calls, truncate
and cancel semantics, expired sessions and dropped sockets — without a network or a key.
An ``xai`` flavour greets with ``conversation.created`` and takes xAI's session shape.

    async with OpenAIRealtimeServer(api_key="k", script=[Reply("Hi there.")]) as server:
        ...connect to server.url with "Authorization: Bearer k"...
        server.received, server.sessions, server.truncates   # what the client did

Each connection is one call; hundreds can run at once. Per 20 ms of caller audio the
server does one RMS, nothing heavier; answer audio is synthesized once and cached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Literal

import audioop
import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentplatform.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from agentplatform.audio.frames import rms_dbfs
from agentplatform.realtime.openai_events import deep_merge

logger = logging.getLogger(__name__)

Flavour = Literal["openai", "xai"]

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
                 "marin", "cedar")
XAI_VOICES = ("ara", "eve", "rex", "sal", "leo")
_GA_SESSION_KEYS = frozenset({
    "type", "audio", "include", "instructions", "max_output_tokens", "model",
    "output_modalities", "parallel_tool_calls", "prompt", "reasoning", "tool_choice", "tools",
    "tracing", "truncation",
})
_XAI_SESSION_KEYS = frozenset({"voice", "instructions", "turn_detection", "tools", "audio",
                               "tool_choice", "model"})
_INPUT_KEYS = frozenset({"format", "turn_detection", "transcription", "noise_reduction"})
_OUTPUT_KEYS = frozenset({"format", "voice", "speed"})
_FORMATS = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}  # bytes per ms
_SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 250}
_EVENT_IDS = itertools.count(1)
DEFAULT_REPLY = "This is the simulated assistant. How can I help you today?"


@dataclass(slots=True)
class Reply:
    """One scripted answer: spoken ``text`` (``audio_ms`` long), then maybe a tool call."""

    text: str = DEFAULT_REPLY
    audio_ms: int | None = None
    tool_call: tuple[str, str] | None = None  # (name, arguments JSON)


@dataclass(slots=True)
class ToolRule:
    """When the caller's latest words contain ``contains``, call ``name`` with ``arguments``."""

    contains: str
    name: str
    arguments: str = "{}"


class _Invalid(Exception):
    """A client event the real server would answer with an ``error`` event."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@lru_cache(maxsize=32)
def voice_like(ms: int, fmt: str) -> bytes:
    """A vowel-ish buzz (140 Hz and harmonics) with a 4 Hz syllable envelope, in ``fmt``."""
    rate = 24000 if fmt == "audio/pcm" else 8000
    t = np.arange(rate * ms // 1000, dtype=np.float64) / rate
    wave = sum(a * np.sin(2 * math.pi * 140.0 * h * t) for h, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
    envelope = np.abs(np.sin(math.pi * 4.0 * t)) ** 0.6
    pcm = np.clip(wave * envelope * 0.18 * 32767, -32768, 32767).astype("<i2").tobytes()
    if fmt == "audio/pcmu":
        return pcm16_to_ulaw(pcm)
    if fmt == "audio/pcma":
        return audioop.lin2alaw(pcm, 2)
    return pcm


def _check_format(fmt: Any, param: str) -> str:
    if not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS:
        raise _Invalid(f"Invalid audio format {fmt!r}.", param=param)
    if fmt["type"] == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise _Invalid("audio/pcm supports only rate 24000.", param=f"{param}.rate")
    return str(fmt["type"])


def _check_turn_detection(td: Any, param: str) -> None:
    if td is None:
        return
    if not isinstance(td, dict) or td.get("type") not in ("server_vad", "semantic_vad"):
        raise _Invalid(f"Invalid turn_detection {td!r}.", param=param)
    threshold = td.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise _Invalid("threshold must be between 0 and 1.", param=f"{param}.threshold")
    if td.get("eagerness", "auto") not in _SEMANTIC_SILENCE_MS:
        raise _Invalid("Invalid eagerness.", param=f"{param}.eagerness")


@dataclass(slots=True)
class SessionFacts:
    """What the simulator acts on, read out of the (merged) session configuration."""

    voice: Any
    in_fmt: str = "audio/pcm"
    out_fmt: str = "audio/pcm"
    td: dict[str, Any] | None = field(default_factory=lambda: {"type": "server_vad"})
    modality: str = "audio"
    max_tokens: int | str = "inf"
    instructions: str = ""
    transcribe: bool = False


def validate_session(session: dict[str, Any], flavour: Flavour, now: SessionFacts) -> SessionFacts:
    """Check a ``session.update`` the way the real server does; the facts it leaves."""
    xai = flavour == "xai"
    for key in session:
        if key not in (_XAI_SESSION_KEYS if xai else _GA_SESSION_KEYS):
            raise _Invalid(f"Unknown parameter: 'session.{key}'.", "unknown_parameter",
                           f"session.{key}")
    if not xai and session.get("type") != "realtime":
        raise _Invalid("session.type must be 'realtime'.", "missing_required_parameter",
                       "session.type")
    audio = session.get("audio") or {}
    audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
    for part, allowed, name in ((audio_in, _INPUT_KEYS, "input"),
                                (audio_out, _OUTPUT_KEYS, "output")):
        for key in part:
            if key not in allowed or (xai and key != "format"):
                raise _Invalid(f"Unknown parameter: 'session.audio.{name}.{key}'.",
                               "unknown_parameter", f"session.audio.{name}.{key}")
    facts = replace(now)
    if "format" in audio_in:
        facts.in_fmt = _check_format(audio_in["format"], "session.audio.input.format")
    if "format" in audio_out:
        facts.out_fmt = _check_format(audio_out["format"], "session.audio.output.format")
    td_holder, td_param = (session, "session.turn_detection") if xai else \
        (audio_in, "session.audio.input.turn_detection")
    facts.td = td_holder.get("turn_detection", now.td)
    _check_turn_detection(facts.td, td_param)
    voices, voice_param = (XAI_VOICES, "session.voice") if xai else \
        (OPENAI_VOICES, "session.audio.output.voice")
    facts.voice = (session if xai else audio_out).get("voice", now.voice)
    if not (facts.voice in voices or (isinstance(facts.voice, dict) and "id" in facts.voice)):
        raise _Invalid(f"Invalid voice {facts.voice!r}; supported: {', '.join(voices)}.",
                       param=voice_param)
    facts.max_tokens = session.get("max_output_tokens", now.max_tokens)
    if facts.max_tokens != "inf" and not (
            isinstance(facts.max_tokens, int) and 1 <= facts.max_tokens <= 4096):
        raise _Invalid("max_output_tokens must be 1-4096 or 'inf'.",
                       param="session.max_output_tokens")
    modalities = session.get("output_modalities", [now.modality])
    if modalities not in (["audio"], ["text"]):
        raise _Invalid("output_modalities must be ['audio'] or ['text'].",
                       param="session.output_modalities")
    facts.modality = modalities[0]
    for tool in session.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type") != "function" or not tool.get("name"):
            raise _Invalid(f"Invalid tool {tool!r}.", param="session.tools")
    facts.instructions = str(session.get("instructions", now.instructions))
    if "transcription" in audio_in:
        facts.transcribe = bool(audio_in["transcription"])
    return facts


@dataclass(slots=True)
class _Vad:
    """Energy VAD on the audio clock: speech above a level gate, a turn ends after silence."""

    td: dict[str, Any] | None
    speaking: bool = False
    item: str = ""
    start_ms: float = 0.0
    end_ms: float = 0.0
    silence_ms: float = 0.0

    def feed(self, clock_ms: float, ms: float, level_dbfs: float) -> str | None:
        """One frame ending at ``clock_ms``: "started", "stopped" or None."""
        td = self.td or {}
        voiced = level_dbfs > -60.0 + 40.0 * float(td.get("threshold", 0.5))
        if not self.speaking:
            if not voiced:
                return None
            self.speaking, self.silence_ms, self.item = True, 0.0, _new_id("item")
            self.start_ms = max(0.0, clock_ms - ms - td.get("prefix_padding_ms", 300))
            return "started"
        self.silence_ms = 0.0 if voiced else self.silence_ms + ms
        needed = _SEMANTIC_SILENCE_MS[td.get("eagerness", "auto")] \
            if td.get("type") == "semantic_vad" else td.get("silence_duration_ms", 500)
        if self.silence_ms < needed:
            return None
        self.speaking, self.end_ms = False, clock_ms - self.silence_ms
        return "stopped"


class _Call:
    """One connection: its session, conversation, VAD and the response being streamed."""

    def __init__(self, server: OpenAIRealtimeServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.session_id = _new_id("sess")
        self.config: dict[str, Any] = {}  # the effective session, as the client set it
        xai = server.flavour == "xai"
        self.facts = SessionFacts(voice=XAI_VOICES[0] if xai else "marin", transcribe=xai)
        self.last_item: str | None = None
        # Input buffer and VAD state, on the audio clock (ms of caller audio received).
        self.clock_ms = 0.0
        self.buffer_ms = 0.0
        self.vad = _Vad(self.facts.td)
        # Responses.
        self.response: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None
        self.cancelled = asyncio.Event()
        self.item_audio_ms: dict[str, int] = {}
        self.user_turns = 0
        self.last_user_text = ""
        self.tool_turn = -1
        self.user_audio_ms = 0.0
        self.assistant_audio_ms = 0
        self.text_chars = 0
        self.last_input_tokens = 0

    # ------------------------------------------------------------ plumbing

    async def send(self, event: dict[str, Any]) -> None:
        event = {"event_id": f"event_{next(_EVENT_IDS)}", **event}
        if self.server.record:
            self.sent.append(event)
        await self.ws.send(orjson.dumps(event).decode())

    async def error(self, message: str, code: str, param: str | None = None,
                    client_event: str | None = None, kind: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {
            "type": kind, "code": code, "message": message, "param": param,
            "event_id": client_event}})

    async def run(self) -> None:
        if self.server.flavour == "xai":
            await self.send({"type": "conversation.created", "conversation": {
                "id": _new_id("conv"), "object": "realtime.conversation"}})
        else:
            await self.send({"type": "session.created", "session": self.session_view()})
        async for raw in self.ws:
            await self.on_message(raw)

    async def on_message(self, raw: str | bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self.error("The message is not valid JSON.", "invalid_json")
            return
        if not isinstance(event, dict):
            await self.error("An event must be a JSON object.", "invalid_json")
            return
        if self.server.record:
            self.received.append(event)
            self.server.received.append(event)
        handler = self.HANDLERS.get(event.get("type"))
        if handler is None:
            await self.error(f"Unknown event type {event.get('type')!r}.", "invalid_value",
                             "type", event.get("event_id"))
            return
        try:
            await handler(self, event)
        except _Invalid as exc:
            await self.error(str(exc), exc.code, exc.param, event.get("event_id"))
        except Exception as exc:  # a simulator bug must not end the call under test
            logger.exception("simulator: %s failed", event.get("type"))
            await self.error(f"Malformed {event.get('type')}: {exc}", "invalid_value", None,
                             event.get("event_id"))

    def session_view(self) -> dict[str, Any]:
        """The effective session, as ``session.created``/``session.updated`` report it."""
        if self.server.flavour == "xai":
            return {"id": self.session_id, **self.config}
        f = self.facts
        fmt = {"audio/pcm": {"type": "audio/pcm", "rate": 24000}}
        defaults = {
            "type": "realtime", "id": self.session_id, "object": "realtime.session",
            "model": self.server.model, "expires_at": int(time.time()) + 3600,
            "output_modalities": [f.modality], "instructions": f.instructions,
            "max_output_tokens": f.max_tokens,
            "audio": {"input": {"format": fmt.get(f.in_fmt, {"type": f.in_fmt}),
                                "turn_detection": f.td},
                      "output": {"format": fmt.get(f.out_fmt, {"type": f.out_fmt}),
                                 "voice": f.voice}},
        }
        return deep_merge(defaults, self.config)

    # ------------------------------------------------------------ session

    async def on_session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise _Invalid("Missing session.", "missing_required_parameter", "session")
        facts = validate_session(session, self.server.flavour, self.facts)
        if facts.voice != self.facts.voice and self.assistant_audio_ms:
            raise _Invalid("Cannot update a voice after the model has produced audio.",
                           "cannot_update_voice", "voice")
        self.server.sessions.append(session)
        self.config = deep_merge(self.config, session)
        self.facts = facts
        self.vad.td = facts.td
        await self.send({"type": "session.updated", "session": self.session_view()})

    # ------------------------------------------------------------ input audio and VAD

    async def on_append(self, event: dict[str, Any]) -> None:
        try:
            audio = base64.b64decode(event.get("audio") or "", validate=True)
        except ValueError as exc:
            raise _Invalid("audio is not valid base64.", param="audio") from exc
        if self.server.on_audio is not None:  # the benchmark times the caller's audio in
            self.server.on_audio(self, audio, time.monotonic())
        fmt = self.facts.in_fmt
        ms = len(audio) / _FORMATS[fmt]
        self.clock_ms += ms
        self.buffer_ms += ms
        if self.vad.td is None or not audio:
            return
        pcm = ulaw_to_pcm16(audio) if fmt == "audio/pcmu" else \
            audioop.alaw2lin(audio, 2) if fmt == "audio/pcma" else audio
        change = self.vad.feed(self.clock_ms, ms, rms_dbfs(pcm))
        if change == "started":
            await self.send({"type": "input_audio_buffer.speech_started",
                             "audio_start_ms": int(self.vad.start_ms), "item_id": self.vad.item})
            if self.response is not None and self.vad.td.get("interrupt_response", True):
                self.cancel("turn_detected")
        elif change == "stopped":
            await self.send({"type": "input_audio_buffer.speech_stopped",
                             "audio_end_ms": int(self.vad.end_ms), "item_id": self.vad.item})
            await self.commit(self.vad.item, self.vad.end_ms - self.vad.start_ms)
            if self.vad.td.get("create_response", True) and self.response is None:
                self.start_response(None)

    async def on_commit(self, event: dict[str, Any]) -> None:
        if self.buffer_ms <= 0:
            raise _Invalid("Error committing input audio buffer: buffer is empty.",
                           "input_audio_buffer_commit_empty")
        await self.commit(_new_id("item"), self.buffer_ms)

    async def on_clear(self, event: dict[str, Any]) -> None:
        self.buffer_ms = 0.0
        await self.send({"type": "input_audio_buffer.cleared"})

    async def commit(self, item_id: str, speech_ms: float) -> None:
        """Close the caller's turn: commit the buffer as a user item and transcribe it."""
        self.buffer_ms = 0.0
        self.user_turns += 1
        self.user_audio_ms += speech_ms
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id,
                         "previous_item_id": self.last_item})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        await self.add_item(item)
        text = self.server.next_caller_text(speech_ms)
        self.last_user_text = text
        if self.facts.transcribe:
            base = {"item_id": item_id, "content_index": 0}
            await self.send({"type": "conversation.item.input_audio_transcription.delta",
                             **base, "delta": text})
            await self.send({"type": "conversation.item.input_audio_transcription.completed",
                             **base, "transcript": text,
                             "usage": {"type": "duration", "seconds": round(speech_ms / 1000, 3)}})

    # ------------------------------------------------------------ conversation items

    async def add_item(self, item: dict[str, Any]) -> None:
        previous, self.last_item = self.last_item, item["id"]
        self.items[item["id"]] = item
        for kind in ("conversation.item.added", "conversation.item.done"):
            await self.send({"type": kind, "previous_item_id": previous, "item": item})

    async def on_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise _Invalid("Missing item.", "missing_required_parameter", "item")
        kind, role = item.get("type"), item.get("role")
        allowed = {"user": {"input_text", "input_audio", "input_image"},
                   "assistant": {"output_text", "output_audio"}, "system": {"input_text"}}
        if kind == "message":
            if role not in allowed or not isinstance(item.get("content"), list):
                raise _Invalid(f"Invalid message role {role!r}.", param="item.role")
            for part in item["content"]:
                if not isinstance(part, dict) or part.get("type") not in allowed[role]:
                    raise _Invalid(f"Invalid content type for a {role} message: {part!r}.",
                                   param="item.content")
                self.text_chars += len(str(part.get("text") or ""))
            if role == "user":
                self.user_turns += 1
                self.last_user_text = " ".join(str(p.get("text", "")) for p in item["content"])
        elif kind == "function_call_output":
            if not item.get("call_id") or not isinstance(item.get("output"), str):
                raise _Invalid("function_call_output needs call_id and output.", param="item")
            self.text_chars += len(item["output"])
        elif kind != "function_call":
            raise _Invalid(f"Invalid item type {kind!r}.", param="item.type")
        await self.add_item({"object": "realtime.item", "status": "completed", **item,
                             "id": item.get("id") or _new_id("item")})

    async def on_item_delete(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if item_id not in self.items:
            raise _Invalid(f"Item with id {item_id!r} not found.", "item_not_found", "item_id")
        del self.items[item_id]
        if self.last_item == item_id:
            self.last_item = next(reversed(self.items), None)
        self.server.deleted.append(item_id)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def on_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        if item_id not in self.item_audio_ms:
            raise _Invalid(f"No assistant audio item {item_id!r}.", param="item_id")
        if not isinstance(end_ms, int) or end_ms < 0:
            raise _Invalid("audio_end_ms must be a non-negative integer.", param="audio_end_ms")
        if end_ms > self.item_audio_ms[item_id]:
            raise _Invalid(f"Audio content of {self.item_audio_ms[item_id]}ms is shorter than "
                           f"{end_ms}ms.", param="audio_end_ms")
        self.server.truncates.append((item_id, end_ms))
        await self.send({"type": "conversation.item.truncated", "item_id": item_id,
                         "content_index": event.get("content_index", 0), "audio_end_ms": end_ms})

    # ------------------------------------------------------------ responses

    async def on_response_create(self, event: dict[str, Any]) -> None:
        if self.response is not None:
            raise _Invalid("Conversation already has an active response in progress.",
                           "conversation_already_has_active_response")
        self.start_response((event.get("response") or {}).get("instructions"))

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        if self.response is None or self.cancel_reason:
            raise _Invalid("Cancellation failed: no active response found.",
                           "response_cancel_not_active")
        self.cancel("client_cancelled")

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self.cancelled.set()

    def start_response(self, instructions: str | None) -> None:
        self.cancel_reason = None
        self.cancelled.clear()
        self.response = asyncio.create_task(self.respond(self.next_reply(), instructions))

    def next_reply(self) -> Reply:
        if self.tool_turn != self.user_turns and self.last_item in self.items and \
                self.items[self.last_item].get("type") != "function_call_output":
            text = self.last_user_text.lower()
            for rule in self.server.tool_rules:
                if rule.contains.lower() in text:
                    self.tool_turn = self.user_turns
                    return Reply(text="", tool_call=(rule.name, rule.arguments))
        return self.server.next_reply()

    async def respond(self, reply: Reply, instructions: str | None) -> None:
        response_id = _new_id("resp")
        self.server.response_instructions.append(instructions)
        base = {"id": response_id, "object": "realtime.response",
                "output_modalities": [self.facts.modality],
                "max_output_tokens": self.facts.max_tokens}
        output: list[dict[str, Any]] = []
        counts = {"audio_ms": 0, "text_chars": 0}
        inputs = self.input_tokens()
        try:
            await self.send({"type": "response.created", "response": {
                **base, "status": "in_progress", "output": []}})
            if reply.text:
                output.append(await self.stream_message(response_id, reply, counts))
            if reply.tool_call and not self.cancel_reason:
                output.append(await self.function_call(response_id, len(output), reply.tool_call))
                counts["text_chars"] += len(reply.tool_call[1])
            status = "cancelled" if self.cancel_reason else "completed"
            details: dict[str, Any] = {"type": status}
            if self.cancel_reason:
                details["reason"] = self.cancel_reason
            await self.send({"type": "response.done", "response": {
                **base, "status": status, "status_details": details, "output": output,
                "usage": self.usage(inputs, counts)}})
        except ConnectionClosed:
            pass
        finally:
            self.response = None

    async def stream_message(self, response_id: str, reply: Reply,
                             counts: dict[str, int]) -> dict[str, Any]:
        item_id, audio_mode = _new_id("item"), self.facts.modality == "audio"
        item = {"id": item_id, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": "in_progress", "content": []}
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0,
                 "content_index": 0}
        await self.send({"type": "response.output_item.added", "response_id": response_id,
                         "output_index": 0, "item": item})
        previous, self.last_item = self.last_item, item_id
        self.items[item_id] = item
        await self.send({"type": "conversation.item.added", "previous_item_id": previous,
                         "item": item})
        part_type = "audio" if audio_mode else "text"
        await self.send({"type": "response.content_part.added", **where,
                         "part": {"type": part_type, "transcript" if audio_mode else "text": ""}})
        words = reply.text.split()
        audio_ms = (reply.audio_ms or self.server.reply_ms) if audio_mode else 0
        audio = voice_like(audio_ms, self.facts.out_fmt) if audio_mode else b""
        chunk_ms = self.server.chunk_ms
        n_chunks = max(1, math.ceil(audio_ms / chunk_ms)) if audio_mode else len(words) or 1
        step = chunk_ms * _FORMATS[self.facts.out_fmt]
        delta_kind = "response.output_audio_transcript.delta" if audio_mode \
            else "response.output_text.delta"
        spoken: list[str] = []
        self.item_audio_ms[item_id] = 0
        started = time.monotonic()
        for i in range(n_chunks):
            if self.cancel_reason:
                break
            if audio_mode:
                chunk = audio[i * step:(i + 1) * step]
                await self.send({"type": "response.output_audio.delta", **where,
                                 "delta": base64.b64encode(chunk).decode()})
                sent_ms = len(chunk) // _FORMATS[self.facts.out_fmt]
                self.item_audio_ms[item_id] += sent_ms
                counts["audio_ms"] += sent_ms
            upto = len(words) * (i + 1) // n_chunks
            for word in words[len(spoken):upto]:
                await self.send({"type": delta_kind, **where,
                                 "delta": word if not spoken else " " + word})
                spoken.append(word)
            await self.pace(started, (i + 1) * chunk_ms)
        text = " ".join(spoken)
        counts["text_chars"] += len(text)
        self.assistant_audio_ms += self.item_audio_ms[item_id]
        self.text_chars += len(text)
        if audio_mode:
            await self.send({"type": "response.output_audio.done", **where})
            await self.send({"type": "response.output_audio_transcript.done", **where,
                             "transcript": text})
            content = {"type": "output_audio", "transcript": text}
        else:
            await self.send({"type": "response.output_text.done", **where, "text": text})
            content = {"type": "output_text", "text": text}
        part = {"type": part_type, "transcript" if audio_mode else "text": text}
        await self.send({"type": "response.content_part.done", **where, "part": part})
        item = {**item, "status": "incomplete" if self.cancel_reason else "completed",
                "content": [content]}
        self.items[item_id] = item
        await self.send({"type": "response.output_item.done", "response_id": response_id,
                         "output_index": 0, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous,
                         "item": item})
        return item

    async def pace(self, started: float, elapsed_ms: float) -> None:
        """Wait until ``elapsed_ms`` of audio is due at the server's pace, or a cancel."""
        if not self.server.pace:
            await asyncio.sleep(0)
            return
        due = started + elapsed_ms / 1000.0 / self.server.pace - time.monotonic()
        if due > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due):
                    await self.cancelled.wait()

    async def function_call(self, response_id: str, index: int,
                            call: tuple[str, str]) -> dict[str, Any]:
        name, arguments = call
        item_id, call_id = _new_id("item"), _new_id("call")
        item = {"id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "name": name, "call_id": call_id, "arguments": ""}
        where = {"response_id": response_id, "item_id": item_id, "output_index": index,
                 "call_id": call_id}
        await self.send({"type": "response.output_item.added", "response_id": response_id,
                         "output_index": index, "item": item})
        await self.send({"type": "response.function_call_arguments.delta", **where,
                         "delta": arguments})
        await self.send({"type": "response.function_call_arguments.done", **where,
                         "name": name, "arguments": arguments})
        item = {**item, "status": "completed", "arguments": arguments}
        self.items[item_id], self.last_item = item, item_id
        await self.send({"type": "response.output_item.done", "response_id": response_id,
                         "output_index": index, "item": item})
        return item

    def input_tokens(self) -> tuple[int, int]:
        """(text, audio) tokens of the conversation so far, re-billed as each response's input."""
        in_text = math.ceil((len(self.facts.instructions) + self.text_chars) / 4)
        return in_text, int(self.user_audio_ms // 100) + self.assistant_audio_ms // 50

    def usage(self, inputs: tuple[int, int], counts: dict[str, int]) -> dict[str, Any]:
        """Token counts the way OpenAI bills: user audio 1 per 100 ms, assistant audio 1 per
        50 ms, the whole conversation as input, the previous input counted as cached."""
        in_text, in_audio = inputs
        out_text = math.ceil(counts["text_chars"] / 4)
        out_audio = counts["audio_ms"] // 50
        cached = min(self.last_input_tokens, in_text + in_audio)
        self.last_input_tokens = in_text + in_audio
        return {
            "total_tokens": in_text + in_audio + out_text + out_audio,
            "input_tokens": in_text + in_audio, "output_tokens": out_text + out_audio,
            "input_token_details": {"text_tokens": in_text, "audio_tokens": in_audio,
                                    "cached_tokens": cached, "image_tokens": 0},
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }

    async def stop(self) -> None:
        if self.response is not None:
            self.response.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.response

    HANDLERS: dict[Any, Any] = {
        "session.update": on_session_update,
        "input_audio_buffer.append": on_append,
        "input_audio_buffer.commit": on_commit,
        "input_audio_buffer.clear": on_clear,
        "conversation.item.create": on_item_create,
        "conversation.item.truncate": on_truncate,
        "conversation.item.delete": on_item_delete,
        "response.create": on_response_create,
        "response.cancel": on_response_cancel,
    }


class OpenAIRealtimeServer:
    """The simulated realtime endpoint; ``async with`` it, then point a client at ``url``."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        flavour: Flavour = "openai",
        script: list[Reply] | None = None,
        tool_rules: list[ToolRule] | None = None,
        caller_texts: list[str] | None = None,
        reply_ms: int = 1500,
        chunk_ms: int = 100,
        pace: float | None = None,
        model: str = "gpt-realtime",
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.flavour: Flavour = flavour
        self.script = list(script or [])
        self.tool_rules = list(tool_rules or [])
        self.caller_texts = list(caller_texts or [])
        self.reply_ms = reply_ms
        self.chunk_ms = chunk_ms
        self.pace = pace  # 1.0 = real time, 2.0 = twice as fast, None/0 = as fast as possible
        self.model = model
        self.record = record
        self.host, self.port = host, port
        # Fault injection.
        self.refuse_key = False
        self.fail_connects = 0
        # What clients did, for assertions.
        self.received: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.truncates: list[tuple[str, int]] = []
        self.deleted: list[str] = []
        self.requests: list[tuple[str, Headers]] = []
        self.response_instructions: list[str | None] = []
        self.connections: list[_Call] = []
        # Called with (connection, audio, time.monotonic()) as each append arrives.
        self.on_audio: Callable[[_Call, bytes, float], None] | None = None
        self._live: set[_Call] = set()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"

    @property
    def base_url(self) -> str:
        """``http://host:port``, the shape an Azure endpoint setting has."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._check_upgrade,
            compression=None, max_size=16 * 1024 * 1024, ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> OpenAIRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def next_reply(self) -> Reply:
        return self.script.pop(0) if self.script else Reply(audio_ms=self.reply_ms)

    def next_caller_text(self, speech_ms: float) -> str:
        if self.caller_texts:
            return self.caller_texts.pop(0)
        return f"(caller spoke {speech_ms / 1000:.1f} s)"

    async def expire_session(self) -> None:
        """What OpenAI does at the session limit: an error, then a 1001 close."""
        for call in list(self._live):
            with contextlib.suppress(ConnectionClosed):
                await call.error("Your session hit the maximum duration of 60 minutes.",
                                 "session_expired")
                await call.ws.close(1001, "session expired")

    async def drop(self) -> None:
        """Cut every live connection at the TCP level, with no close frame."""
        for call in list(self._live):
            call.ws.transport.abort()

    def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append((request.path, request.headers))
        if self.fail_connects > 0:
            self.fail_connects -= 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "simulated outage\n")
        if not request.path.split("?", 1)[0].endswith("/realtime"):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else \
            request.headers.get("api-key", "")
        if self.refuse_key or key != self.api_key:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid api key\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        call = _Call(self, ws)
        self.connections.append(call)
        self._live.add(call)
        try:
            await call.run()
        except ConnectionClosed:
            pass
        finally:
            self._live.discard(call)
            await call.stop()
