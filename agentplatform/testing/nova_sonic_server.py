"""A protocol-faithful Amazon Nova Sonic simulator: HTTP/2 over TLS on loopback.

It serves ``POST /model/{modelId}/invoke-with-bidirectional-stream`` the way Bedrock
does (with or without the empty query AWS's SDK appends): it checks the request's
SigV4 signature (recomputed with botocore from the known test secret) and the chained
signature of every streamed event, decodes the
event sequence and enforces its order, runs an energy VAD over the 16 kHz caller
audio, and answers with Nova's output sequence: the caller's transcript, planned
(SPECULATIVE) text, 24 kHz audio, the spoken (FINAL) text, usage, completionEnd.
Caller speech during an answer interrupts it the way the service does.

What the model says is scripted (``ScriptedTurn``); the script advances across
streams, so a conversation continues after the client recycles its connection.
Everything received is recorded on ``NovaSonicServer.sessions`` for tests to check.
Its messages are built by ``nova_sonic_wire``, never by the adapter's ``nova_events``,
and its exceptions carry AWS's names (``modelTimeoutException``…).

    async with NovaSonicServer(script=[ScriptedTurn("Hi there!")]) as server:
        setup = SessionSetup(..., url=server.url, api_key=server.access_key,
                             extra=server.client_extra())
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import functools
import logging
import math
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson

from agentplatform.realtime.aws_eventstream import verify_request
from agentplatform.realtime.aws_http2 import Http2ServerConnection
from agentplatform.testing import nova_sonic_wire as wire
from agentplatform.testing.tls import make_tls_pair

log = logging.getLogger(__name__)

_ROUTE_PREFIX = "/model/"
_ROUTE_SUFFIX = "/invoke-with-bidirectional-stream"
_HISTORY_BEFORE_AUDIO = "Chat history should be sent completely before streaming audio"


@dataclass(slots=True)
class ScriptedTurn:
    """One answer. ``user`` is what the caller "said" (the simulated transcript);
    with ``tool`` set the model first calls that tool with ``tool_args``, waits for
    the result, then says ``reply`` with ``{result}`` replaced by the tool's output."""

    reply: str
    user: str = "caller speech"
    tool: str | None = None
    tool_args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SimSession:
    """What one stream received and how it went."""

    model_id: str
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)  # audioInput left out
    audio_in_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    tool_results: dict[str, str] = field(default_factory=dict)
    turns_answered: int = 0
    interruptions: int = 0
    ended_cleanly: bool = False  # contentEnd(audio), promptEnd, sessionEnd, empty event
    raw: bytearray = field(default_factory=bytearray)  # request body, with keep_raw=True

    def names(self) -> list[str]:
        return [next(iter(e["event"])) for e in self.events]

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [e["event"][name] for e in self.events if name in e["event"]]

    def text_blocks(self) -> list[tuple[str, str]]:
        """``(role, text)`` of every TEXT block, in order."""
        roles: dict[str, str] = {}
        blocks: list[tuple[str, str]] = []
        for e in self.events:
            ((name, body),) = e["event"].items()
            if name == "contentStart" and body.get("type") == "TEXT":
                roles[body["contentName"]] = body.get("role", "")
            elif name == "textInput":
                blocks.append((roles.get(body["contentName"], ""), body.get("content", "")))
        return blocks


# ---------------------------------------------------------------- the server


class NovaSonicServer:
    """The simulator. ``await start()`` (or ``async with``) then point clients at ``url``."""

    def __init__(
        self, *, script: list[ScriptedTurn] | None = None, access_key: str = "AKIDNOVATEST",
        secret_key: str = "nova-test-secret", region: str = "us-east-1",
        refuse_key: bool = False, max_connection_seconds: float | None = None,
        speed: float = 0.0, reply_ms_per_char: int = 40, chunk_ms: int = 40,
        vad_threshold: int = 600, speech_start_ms: int = 60, silence_end_ms: int = 300,
        keep_raw: bool = False,
    ) -> None:
        self.script = list(script or [])
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.refuse_key = refuse_key
        self.max_connection_seconds = max_connection_seconds
        # Output pace as a multiple of real time; 0 sends audio as fast as it can.
        self.speed = speed
        self.reply_ms_per_char = reply_ms_per_char
        self.chunk_ms = chunk_ms
        self.vad_threshold = vad_threshold
        self.speech_start_ms = speech_start_ms
        self.silence_end_ms = silence_end_ms
        # Keep every stream's request body as received, for outside referees to decode.
        self.keep_raw = keep_raw
        self.tls = make_tls_pair()
        self.tls.server.set_alpn_protocols(["h2"])
        self.sessions: list[SimSession] = []
        self.refused: list[str] = []
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_extra(self, **more: Any) -> dict[str, Any]:
        """``SessionSetup.extra`` for an adapter talking to this simulator."""
        return {"region": self.region, "secret_key": self.secret_key,
                "ssl": self.tls.client, **more}

    def next_turn(self) -> ScriptedTurn:
        turn = self.script[self._turn] if self._turn < len(self.script) else \
            ScriptedTurn("I heard you.")
        self._turn += 1
        return turn

    def check_request(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        """``None`` for a request properly signed with the test key; else the error type."""
        if self.refuse_key:
            return "UnrecognizedClientException"
        return verify_request(method, path, headers, access_key=self.access_key,
                              secret_key=self.secret_key, region=self.region)

    def expire(self) -> None:
        """Fault injection on demand: every open stream hits the connection limit now."""
        for conn in list(self._connections):
            for stream in list(conn.streams.values()):
                stream.time_out()

    async def start(self) -> NovaSonicServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0,
                                                  ssl=self.tls.server)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            await conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> NovaSonicServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)


class _Connection:
    """One TLS connection: routing, refusals, and the streams it carries."""

    def __init__(self, server: NovaSonicServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.http = Http2ServerConnection(reader, writer, on_request=self._on_request,
                                          on_data=self._on_data, on_end=self._on_end)
        self.streams: dict[int, _SimStream] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await self.http.run()
        await self.abort()

    async def abort(self) -> None:
        for stream in list(self.streams.values()):
            stream.stop()
        for task in list(self.tasks):
            task.cancel()
        await self.http.close()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        await self.http.send(stream_id, data, end=end)

    def _refuse(self, stream_id: int, status: int, kind: str, message: str) -> None:
        self.http.respond(stream_id, status, [
            ("content-type", "application/json"),
            ("x-amzn-errortype", f"{kind}:http://internal.amazon.com/")],
            orjson.dumps({"message": message}))

    def _on_request(self, stream_id: int, headers: dict[str, str]) -> None:
        method, path = headers.get(":method", ""), headers.get(":path", "")
        # AWS's SDK sends the operation's path with an empty query (``…-stream?``).
        route, _, query = path.partition("?")
        if method != "POST" or query or not (route.startswith(_ROUTE_PREFIX)
                                             and route.endswith(_ROUTE_SUFFIX)):
            self._refuse(stream_id, 404, "UnknownOperationException", "not found")
            return
        refusal = self.server.check_request(method, path, headers)
        if refusal is not None:
            self.server.refused.append(refusal)
            self._refuse(stream_id, 403, refusal, _REFUSALS[refusal])
            return
        record = SimSession(model_id=unquote(route[len(_ROUTE_PREFIX):-len(_ROUTE_SUFFIX)]),
                            headers=headers)
        self.server.sessions.append(record)
        seed = headers["authorization"].rsplit("Signature=", 1)[1].strip()
        stream = _SimStream(self, stream_id, record, bytes.fromhex(seed))
        self.streams[stream_id] = stream
        self.http.respond(stream_id, 200, [("content-type", "application/vnd.amazon.eventstream")])
        stream.begin()

    def _on_data(self, stream_id: int, data: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.feed(data)

    def _on_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.stop()


_REFUSALS = {
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "InvalidSignatureException": "The request signature we calculated does not match the "
                                 "signature you provided.",
}


class _Phase:
    SESSION_START = "sessionStart"
    PROMPT_START = "promptStart"
    SYSTEM = "system"
    CONVERSATION = "conversation"
    ENDING = "ending"
    DONE = "done"


class _SimStream:
    """One bidirectional stream: signature chain, event order, VAD, and the speaker."""

    def __init__(self, conn: _Connection, stream_id: int, record: SimSession,
                 seed: bytes) -> None:
        self.conn = conn
        self.server = conn.server
        self.stream_id = stream_id
        self.record = record
        self.prior = seed
        self.reader = wire.FrameReader()
        self.phase = _Phase.SESSION_START
        self.prompt = ""
        self.blocks: dict[str, dict[str, Any]] = {}  # open input content blocks
        self.audio_content = ""
        self.history_roles: list[str] = []
        self.audio_started = False
        self.session_id = str(uuid.uuid4())
        self.output = wire.Output("", self.session_id)
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.work: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.tool_waiters: dict[str, asyncio.Future[str]] = {}
        self.speaking = False
        self.interrupt = asyncio.Event()
        self.in_speech = False
        self.loud_ms = 0.0
        self.quiet_ms = 0.0
        self.finished = False
        self._timer: asyncio.TimerHandle | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "sessionStart": self._on_session_start, "promptStart": self._on_prompt_start,
            "contentStart": self._on_content_start, "textInput": self._on_text_input,
            "audioInput": self._on_audio_input, "toolResult": self._on_tool_result,
            "contentEnd": self._on_content_end, "promptEnd": self._on_prompt_end,
            "sessionEnd": self._on_session_end,
        }

    def begin(self) -> None:
        self.conn.spawn(self._writer())
        self.conn.spawn(self._speaker())
        if self.server.max_connection_seconds is not None:
            self._timer = asyncio.get_running_loop().call_later(
                self.server.max_connection_seconds, self.time_out)

    def stop(self) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
        self.interrupt.set()
        self.out.put_nowait(None)
        self.work.put_nowait(("stop", ""))
        for waiter in self.tool_waiters.values():
            waiter.cancel()

    # -- output

    def emit(self, message: bytes) -> None:
        """Queue one framed output event (built by ``self.output``)."""
        if not self.finished:
            self.out.put_nowait(message)

    def fail(self, kind: str, message: str) -> None:
        """Report an exception and end the stream, as the service does."""
        if self.finished:
            return
        self.record.errors.append(f"{kind}: {message}")
        self.out.put_nowait(wire.exception_frame(kind, message))
        self.stop()

    def time_out(self) -> None:
        self.fail(wire.MODEL_TIMEOUT,
                  "Model has timed out in processing the request. Try your request again.")

    async def _writer(self) -> None:
        while (data := await self.out.get()) is not None:
            await self.conn.send(self.stream_id, data)
        await self.conn.send(self.stream_id, b"", end=True)
        self.conn.streams.pop(self.stream_id, None)

    # -- input

    def feed(self, data: bytes) -> None:
        if self.server.keep_raw:
            self.record.raw += data
        if self.finished:
            return
        try:
            envelopes = self.reader.feed(data)
        except wire.WireError as exc:
            self.fail(wire.VALIDATION, str(exc))
            return
        for envelope in envelopes:
            if self.finished:
                return
            try:
                self.prior = wire.check_event_signature(
                    envelope, secret=self.server.secret_key, region=self.server.region,
                    service="bedrock", prior=self.prior)
            except wire.WireError as exc:
                # Bedrock reports a broken event signature as a validation failure of
                # the stream (the request itself was already accepted).
                self.fail(wire.VALIDATION, f"invalid signature: {exc}")
                return
            if not envelope.payload:
                self.record.ended_cleanly = self.phase == _Phase.DONE
                continue
            self._on_inner(envelope.payload)

    def _on_inner(self, payload: bytes) -> None:
        try:
            name, body = wire.read_input_event(payload)
        except wire.WireError as exc:
            self.fail(wire.VALIDATION, f"malformed inner message: {exc}")
            return
        handler = self._handlers.get(name)
        if handler is None:
            self.fail(wire.VALIDATION, f"unknown input event {name!r}")
            return
        if name != "audioInput":
            self.record.events.append({"event": {name: body}})
        if name not in ("sessionStart", "sessionEnd", "promptStart") and \
                body.get("promptName") != self.prompt:
            self.fail(wire.VALIDATION, f"{name} names an unknown prompt")
            return
        handler(body)

    def _expect(self, phase: str, name: str) -> bool:
        if self.phase != phase:
            self.fail(wire.VALIDATION, f"unexpected {name} (expected {self.phase})")
            return False
        return True

    def _on_session_start(self, body: dict[str, Any]) -> None:
        if self._expect(_Phase.SESSION_START, "sessionStart"):
            self.phase = _Phase.PROMPT_START

    def _on_prompt_start(self, body: dict[str, Any]) -> None:
        if self._expect(_Phase.PROMPT_START, "promptStart"):
            self.prompt = str(body.get("promptName", ""))
            self.output = wire.Output(self.prompt, self.session_id)
            self.phase = _Phase.SYSTEM

    def _on_content_start(self, body: dict[str, Any]) -> None:
        kind, role, name = body.get("type"), body.get("role"), body.get("contentName", "")
        if self.phase == _Phase.SYSTEM:
            if kind != "TEXT" or role != "SYSTEM":
                self.fail(wire.VALIDATION, "the first content must be the SYSTEM text")
                return
            self.phase = _Phase.CONVERSATION
        elif not self._expect(_Phase.CONVERSATION, "contentStart"):
            return
        if kind == "AUDIO":
            if self.audio_content:
                self.fail(wire.VALIDATION, "audio content is already open")
                return
            self.audio_content, self.audio_started = name, True
            return
        if kind == "TEXT" and not self.audio_started and not body.get("interactive"):
            expected = "USER" if not self.history_roles or self.history_roles[-1] == "ASSISTANT" \
                else "ASSISTANT"
            if role not in ("SYSTEM", expected):
                self.fail(wire.VALIDATION,
                          "Chat history must start with USER and alternate USER/ASSISTANT")
                return
            if role != "SYSTEM":
                self.history_roles.append(str(role))
        elif kind == "TOOL":
            tool_id = (body.get("toolResultInputConfiguration") or {}).get("toolUseId")
            if tool_id not in self.tool_waiters:
                self.fail(wire.VALIDATION, f"no tool use {tool_id!r} awaits a result")
                return
        self.blocks[name] = {"type": kind, "role": role, "interactive": body.get("interactive"),
                             "tool": (body.get("toolResultInputConfiguration") or {})
                             .get("toolUseId"), "text": ""}

    def _on_text_input(self, body: dict[str, Any]) -> None:
        block = self.blocks.get(body.get("contentName", ""))
        if block is None or block["type"] != "TEXT":
            self.fail(wire.VALIDATION, "textInput outside an open TEXT content")
            return
        block["text"] += str(body.get("content", ""))

    def _on_tool_result(self, body: dict[str, Any]) -> None:
        block = self.blocks.get(body.get("contentName", ""))
        if block is None or block["type"] != "TOOL":
            self.fail(wire.VALIDATION, "toolResult outside an open TOOL content")
            return
        block["text"] += str(body.get("content", ""))

    def _on_content_end(self, body: dict[str, Any]) -> None:
        name = body.get("contentName", "")
        if name == self.audio_content:
            self.audio_content = ""
            return
        block = self.blocks.pop(name, None)
        if block is None:
            self.fail(wire.VALIDATION, "contentEnd for content that is not open")
            return
        if block["type"] == "TOOL":
            self.record.tool_results[block["tool"]] = block["text"]
            waiter = self.tool_waiters.pop(block["tool"])
            if not waiter.done():
                waiter.set_result(block["text"])
        elif block["type"] == "TEXT" and block["role"] == "USER" and block["interactive"]:
            self.work.put_nowait(("text", block["text"]))

    def _on_audio_input(self, body: dict[str, Any]) -> None:
        if any(b["type"] == "TEXT" for b in self.blocks.values()):
            self.fail(wire.VALIDATION, _HISTORY_BEFORE_AUDIO)
            return
        if not self.audio_content or body.get("contentName") != self.audio_content:
            self.fail(wire.VALIDATION, "audioInput without an open AUDIO content")
            return
        try:
            pcm = base64.b64decode(body.get("content", ""), validate=True)
        except ValueError:
            self.fail(wire.VALIDATION, "audioInput content is not base64")
            return
        self.record.audio_in_bytes += len(pcm)
        self._vad(pcm)

    def _on_prompt_end(self, body: dict[str, Any]) -> None:
        if self.audio_content or self.blocks:
            self.fail(wire.VALIDATION, "promptEnd while content is still open")
            return
        self.phase = _Phase.ENDING

    def _on_session_end(self, body: dict[str, Any]) -> None:
        if self._expect(_Phase.ENDING, "sessionEnd"):
            self.phase = _Phase.DONE

    # -- voice activity

    def _vad(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            pcm = pcm[:-1]
        ms = len(pcm) / (wire.INPUT_RATE * 2 / 1000)
        if audioop.rms(pcm, 2) >= self.server.vad_threshold:
            self.loud_ms += ms
            self.quiet_ms = 0.0
            if not self.in_speech and self.loud_ms >= self.server.speech_start_ms:
                self.in_speech = True
                if self.speaking:
                    self.interrupt.set()
        else:
            self.quiet_ms += ms
            if not self.in_speech:
                self.loud_ms = 0.0
            elif self.quiet_ms >= self.server.silence_end_ms:
                self.in_speech = False
                speech_ms, self.loud_ms = self.loud_ms, 0.0
                self.work.put_nowait(("speech", str(int(speech_ms))))

    # -- the model's side

    async def _speaker(self) -> None:
        while not self.finished:
            kind, detail = await self.work.get()
            if self.finished or kind == "stop":
                return
            turn = self.server.next_turn()
            completion = str(uuid.uuid4())
            self.interrupt.clear()
            self.emit(self.output.completion_start(completion))
            if kind == "speech":
                self._say(completion, "TEXT", "USER", "FINAL", turn.user)
                input_speech, input_text = max(1, int(detail) * 25 // 1000), 0
            else:
                input_speech, input_text = 0, max(1, len(detail) // 4)
            reply = turn.reply
            if turn.tool:
                result = await self._use_tool(completion, turn)
                if result is None:
                    return
                reply = reply.replace("{result}", result)
            spoken_ms, interrupted = await self._speak(completion, reply)
            self.record.turns_answered += 1
            self.emit(self.output.usage(
                completion, input_speech=input_speech, input_text=input_text,
                output_speech=max(1, int(spoken_ms) * 25 // 1000),
                output_text=max(1, len(reply) // 4),
                totals=(input_speech + input_text, len(reply) // 4)))
            self.emit(self.output.completion_end(completion,
                                                "INTERRUPTED" if interrupted else "END_TURN"))

    def _say(self, completion: str, kind: str, role: str, stage: str, text: str,
             stop: str = "END_TURN") -> None:
        content = str(uuid.uuid4())
        self.emit(self.output.content_start(completion, content, kind, role, stage))
        self.emit(self.output.text_output(completion, content, role, text))
        self.emit(self.output.content_end(completion, content, kind, stop))

    async def _use_tool(self, completion: str, turn: ScriptedTurn) -> str | None:
        content, tool_use_id = str(uuid.uuid4()), str(uuid.uuid4())
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.tool_waiters[tool_use_id] = waiter
        self.emit(self.output.content_start(completion, content, "TOOL", "TOOL"))
        self.emit(self.output.tool_use(completion, content, tool_use_id, turn.tool or "",
                              orjson.dumps(turn.tool_args).decode()))
        self.emit(self.output.content_end(completion, content, "TOOL", "TOOL_USE"))
        try:
            return await waiter
        except asyncio.CancelledError:
            return None

    async def _speak(self, completion: str, reply: str) -> tuple[float, bool]:
        """Planned text, then paced audio (stoppable by barge-in), then what was said."""
        self._say(completion, "TEXT", "ASSISTANT", "SPECULATIVE", reply, "PARTIAL_TURN")
        content = str(uuid.uuid4())
        self.emit(self.output.content_start(completion, content, "AUDIO", "ASSISTANT"))
        total_ms = max(self.server.chunk_ms, len(reply) * self.server.reply_ms_per_char)
        chunks = math.ceil(total_ms / self.server.chunk_ms)
        sent_ms, interrupted = 0.0, False
        self.speaking = True
        try:
            for _ in range(chunks):
                if self.interrupt.is_set() or self.finished:
                    interrupted = True
                    break
                tone = _tone(self.server.chunk_ms)
                self.emit(self.output.audio_output(completion, content, tone))
                sent_ms += self.server.chunk_ms
                if self.server.speed > 0:
                    await asyncio.sleep(self.server.chunk_ms / 1000 / self.server.speed)
                else:
                    await asyncio.sleep(0)
        finally:
            self.speaking = False
        if interrupted:
            self.record.interruptions += 1
            self._say(completion, "TEXT", "ASSISTANT", "FINAL", wire.INTERRUPTED_TEXT,
                      "INTERRUPTED")
            self.emit(self.output.content_end(completion, content, "AUDIO", "INTERRUPTED"))
            heard = reply[: int(len(reply) * sent_ms / total_ms)]
            if heard:
                self._say(completion, "TEXT", "ASSISTANT", "FINAL", heard, "INTERRUPTED")
        else:
            self.emit(self.output.content_end(completion, content, "AUDIO", "END_TURN"))
            self._say(completion, "TEXT", "ASSISTANT", "FINAL", reply)
        return sent_ms, interrupted


@functools.lru_cache(maxsize=8)
def _tone(chunk_ms: int) -> bytes:
    """A 400 Hz chunk of 24 kHz PCM16 (whole cycles per 40 ms chunk, so chunks join
    seamlessly; cached because the simulator must stay cheap)."""
    n = wire.OUTPUT_RATE * chunk_ms // 1000
    samples = (int(8000 * math.sin(2 * math.pi * 400 * i / wire.OUTPUT_RATE)) for i in range(n))
    return struct.pack(f"<{n}h", *samples)

