"""Gemini Live adapter: ``ModelSession`` over BidiGenerateContent on a WebSocket.

Spoken directly with ``websockets`` rather than through the google-genai SDK: the SDK
builds a pydantic model for every audio frame and always forces ``wss`` with its own
TLS handling, while this path must stay cheap per frame and run against a local
simulator. The wire messages themselves are built and parsed in ``gemini_events``.

Gemini cannot be told how much of an answer the caller heard (no truncate) and
stops generating on its own when it hears the caller (``interrupted``), so
``truncate`` and ``cancel_response`` are no-ops and a stored transcript of an
interrupted answer is what the model said, not exactly what was heard.

Connections last about ten minutes; the service warns with ``goAway``. The session
then opens a new connection with the latest resumption handle *before* the old one
closes (or, with no handle, reconnects and replays the history as context), so a
call outlives any one connection. An unexpected drop takes the same path.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agentplatform.errors import ModelConnectError
from agentplatform.realtime import gemini_events as wire
from agentplatform.realtime.base import (
    AudioDelta,
    AudioDone,
    Capabilities,
    HistoryItem,
    ModelEvent,
    ModelSession,
    ResponseDone,
    SessionError,
    SessionNotice,
    SessionSetup,
    SpeechStarted,
    ToolCall,
    Transcript,
    Usage,
)

log = logging.getLogger(__name__)

# Close codes that mean "your request is wrong" (1007 invalid argument, 1008 policy,
# e.g. a bad key): reconnecting would only repeat the failure.
_FATAL_CLOSE_CODES = frozenset({1007, 1008})
_RECOVERY_ATTEMPTS = 3


class _State(StrEnum):
    NEW = "new"
    OPEN = "open"
    RECOVERING = "recovering"
    CLOSED = "closed"


class GeminiLiveSession(ModelSession):
    """One call's conversation with a Gemini Live model.

    ``setup.extra`` may carry ``ssl`` (an ``ssl.SSLContext`` for ``wss`` URLs, e.g. one
    trusting a test certificate) and ``setup_timeout`` (seconds to wait for
    ``setupComplete``, default 10).
    """

    capabilities = Capabilities(
        input_rate=wire.INPUT_RATE,
        output_rate=wire.OUTPUT_RATE,
        truncates=False,
        g711=False,
        text_modality=False,
    )

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self._state = _State.NEW
        self._ws: ClientConnection | None = None
        self._events: asyncio.Queue[ModelEvent | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._old: set[ClientConnection] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._handle: str | None = None
        self._go_away_left = 10.0
        self._history: list[HistoryItem] = list(setup.history)
        self._realtime_text = wire.uses_realtime_text(setup.model)
        # The model turn in progress: its item id and the transcript so far.
        self._item_id: str | None = None
        self._item_text: list[str] = []
        self._user_text: list[str] = []
        self._interrupted = False
        self._usage: Usage | None = None
        self._handlers: dict[str, Callable[[Any], None]] = {
            "setupComplete": self._on_ignored,
            "serverContent": self._on_server_content,
            "toolCall": self._on_tool_call,
            "toolCallCancellation": self._on_tool_call_cancellation,
            "goAway": self._on_go_away,
            "sessionResumptionUpdate": self._on_resumption_update,
            "voiceActivity": self._on_ignored,
            "voiceActivityDetectionSignal": self._on_ignored,
        }
        # serverContent fields, in the order they must be handled within one message.
        self._content_handlers: tuple[tuple[str, Callable[[Any], None]], ...] = (
            ("interrupted", self._on_interrupted),
            ("inputTranscription", self._on_input_transcription),
            ("modelTurn", self._on_model_turn),
            ("outputTranscription", self._on_output_transcription),
            ("turnComplete", self._on_turn_complete),
        )

    # ------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        if self._state is not _State.NEW:
            raise RuntimeError(f"connect: expected state new, got {self._state}")
        ws = await self._open(resume_handle=None)
        self._install(ws)
        self._state = _State.OPEN

    async def close(self) -> None:
        if self._state is _State.CLOSED and self._ws is None:
            return
        self._state = _State.CLOSED
        current = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in current:
            task.cancel()
        sockets = [ws for ws in (self._ws, *self._old) if ws is not None]
        self._ws = None
        self._old.clear()
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*current, return_exceptions=True)
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[ModelEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    # ------------------------------------------------------------ sending

    async def send_audio(self, audio: bytes) -> None:
        """16 kHz PCM16. Dropped while no connection is usable (a drop mid-recovery)."""
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send(wire.audio_frame(audio))
        except ConnectionClosed:
            pass  # the reader sees the close and recovers

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        """A user text turn. Gemini 3.x models take mid-session text only as
        ``realtimeInput.text`` (which is always answered); others get a
        ``clientContent`` turn whose ``turnComplete`` says whether to answer."""
        self._history.append(HistoryItem("user", text))
        if self._realtime_text and respond:
            await self._send(wire.realtime_text(text))
        else:
            await self._send(wire.user_turn(text, turn_complete=respond))

    async def request_response(self, instructions: str | None = None) -> None:
        """Gemini has no "respond now" message; a user turn carrying the instruction
        (or a bare "." when there is none) makes the model speak."""
        text = instructions or "."
        if self._realtime_text:
            await self._send(wire.realtime_text(text))
        else:
            await self._send(wire.user_turn(text, turn_complete=True))

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        await self._send(wire.tool_response(call_id, name, output))

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """No-op: Gemini cannot be told how much was heard."""

    async def cancel_response(self) -> None:
        """No-op: Gemini stops an answer itself when it hears the caller."""

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            log.debug("gemini: no connection, dropping %s", next(iter(message)))
            return
        try:
            await ws.send(wire.encode(message))
        except ConnectionClosed:
            log.debug("gemini: connection closed, dropping %s", next(iter(message)))

    # ------------------------------------------------------------ connections

    def _endpoint(self) -> tuple[str, dict[str, str]]:
        url = self.setup.url
        if not url:
            raise ModelConnectError("gemini live: no URL configured")
        headers: dict[str, str] = {}
        key = self.setup.api_key
        if self.setup.auth == "query-key":
            url += ("&" if urlsplit(url).query else "?") + urlencode({"key": key})
        elif self.setup.auth == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers["x-goog-api-key"] = key
        return url, headers

    async def _open(self, resume_handle: str | None) -> ClientConnection:
        """Connect, send ``setup``, wait for ``setupComplete``; replay history when not
        resuming. Every failure becomes ``ModelConnectError``."""
        url, headers = self._endpoint()
        history = None if resume_handle else wire.history_turns(self._history)
        setup = wire.build_setup(
            self.setup, resume_handle=resume_handle, history_follows=history is not None
        )
        timeout = float(self.setup.extra.get("setup_timeout", 10.0))
        options: dict[str, Any] = {}
        if url.startswith("wss:") and self.setup.extra.get("ssl") is not None:
            options["ssl"] = self.setup.extra["ssl"]
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                open_timeout=timeout,
                compression=None,  # audio does not deflate; compressing costs CPU
                max_size=16 * 2**20,
                **options,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ModelConnectError(f"gemini live refused the connection: HTTP {status}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ModelConnectError(f"gemini live: cannot connect to {url}: {exc}") from exc
        try:
            await ws.send(wire.encode(setup))
            await asyncio.wait_for(self._setup_complete(ws), timeout)
            if history is not None:
                await ws.send(wire.encode(history))
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            code, reason = (rcvd.code, rcvd.reason) if rcvd else (1006, "no close frame")
            raise ModelConnectError(
                f"gemini live closed the session during setup: {code} {reason}"
            ) from exc
        except TimeoutError as exc:
            await ws.close()
            raise ModelConnectError(f"gemini live: no setupComplete within {timeout:g}s") from exc
        return ws

    async def _setup_complete(self, ws: ClientConnection) -> None:
        while True:
            message = wire.parse_message(await ws.recv())
            if message is None:
                continue
            if "setupComplete" in message:
                return
            log.debug("gemini: before setupComplete, skipping %s", list(message))

    def _install(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._spawn(self._read(ws))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = wire.parse_message(raw)
                if message is not None:
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        if ws is not self._ws or self._state is not _State.OPEN:
            self._old.discard(ws)
            return  # a retired connection, or the session is closing or recovering
        code = ws.close_code
        reason = ws.close_reason or ""
        if code in _FATAL_CLOSE_CODES:
            self._fail("closed", f"gemini live closed the session: {code} {reason}")
            return
        log.info("gemini: connection dropped (%s %s); recovering", code, reason)
        self._start_recovery("dropped")

    def _start_recovery(self, reason: str) -> None:
        if self._state is not _State.OPEN:
            return
        self._state = _State.RECOVERING
        self._recovery = self._spawn(self._recover(reason))

    async def _recover(self, reason: str) -> None:
        """Open a replacement connection, resuming by handle when there is one; if
        resuming fails, fall back to a fresh session with the history replayed."""
        old = self._ws
        error = ""
        for attempt in range(1, _RECOVERY_ATTEMPTS + 1):
            handle = self._handle
            try:
                ws = await self._open(resume_handle=handle)
            except ModelConnectError as exc:
                error = str(exc)
                log.info("gemini: recovery attempt %d failed: %s", attempt, exc)
                self._handle = None  # a stale handle must not fail every attempt
                await asyncio.sleep(0.05 * attempt)
                continue
            if self._state is _State.CLOSED:
                await ws.close()
                return
            if old is not None:
                self._old.add(old)
                self._spawn(self._retire(old, self._go_away_left))
            self._install(ws)
            self._state = _State.OPEN
            kind = "resumed" if handle else "reconnected"
            self._emit(SessionNotice(kind, {"reason": reason, "attempt": attempt}))
            return
        self._fail("session_lost", f"gemini live: could not resume the session: {error}")

    async def _retire(self, ws: ClientConnection, delay: float) -> None:
        """Let a replaced connection deliver what is in flight, then close it."""
        try:
            await asyncio.wait_for(ws.wait_closed(), delay)
        except TimeoutError:
            await ws.close()
        self._old.discard(ws)

    def _fail(self, code: str, message: str) -> None:
        self._state = _State.CLOSED
        self._emit(SessionError(code, message, fatal=True))
        self._events.put_nowait(None)

    # ------------------------------------------------------------ receiving

    def _emit(self, event: ModelEvent) -> None:
        self._events.put_nowait(event)

    def _dispatch(self, message: dict[str, Any]) -> None:
        # Usage first: it often rides in the same message as the turnComplete it counts.
        if "usageMetadata" in message:
            self._guarded(self._on_usage, message["usageMetadata"])
        for key, value in message.items():
            if key == "usageMetadata":
                continue
            handler = self._handlers.get(key)
            if handler is None:
                log.debug("gemini: skipping unknown message %s", key)
                continue
            self._guarded(handler, value)

    def _guarded(self, handler: Callable[[Any], None], value: Any) -> None:
        try:
            handler(value)
        except Exception:  # a malformed message must not end the call
            log.exception("gemini: handler %s failed; skipping", handler.__name__)

    def _on_ignored(self, value: Any) -> None:
        pass

    def _on_server_content(self, content: dict[str, Any]) -> None:
        for key, handler in self._content_handlers:
            value = content.get(key)
            if value:
                handler(value)

    def _begin_item(self) -> str:
        if self._item_id is None:
            self._item_id = f"gemini_{uuid.uuid4().hex[:16]}"
            self._interrupted = False
        return self._item_id

    def _on_model_turn(self, model_turn: dict[str, Any]) -> None:
        chunks = wire.audio_chunks(model_turn)
        if not chunks:
            return
        item_id = self._begin_item()
        for chunk in chunks:
            self._emit(AudioDelta(item_id, chunk))

    def _on_output_transcription(self, value: dict[str, Any]) -> None:
        text = value.get("text") or ""
        if text:
            item_id = self._begin_item()
            self._item_text.append(text)
            self._emit(Transcript("assistant", text, False, item_id))

    def _on_input_transcription(self, value: dict[str, Any]) -> None:
        text = value.get("text") or ""
        if text:
            self._user_text.append(text)
            self._emit(Transcript("user", text, False))

    def _on_interrupted(self, _: Any) -> None:
        """The caller spoke over the answer: the bridge's barge-in signal, then the
        answer ends where the model stopped."""
        self._emit(SpeechStarted(self._item_id or ""))
        self._close_item()
        self._interrupted = True

    def _on_turn_complete(self, _: Any) -> None:
        self._close_item()
        status = "cancelled" if self._interrupted else "completed"
        self._emit(ResponseDone(status=status, usage=self._usage))
        self._usage = None
        self._interrupted = False

    def _close_item(self) -> None:
        """Finish the caller's words so far, then the answer in progress (if any)."""
        user = "".join(self._user_text).strip()
        self._user_text.clear()
        if user:
            self._history.append(HistoryItem("user", user))
            self._emit(Transcript("user", user, True))
        item_id = self._item_id
        if item_id is None:
            return
        text = "".join(self._item_text).strip()
        self._item_id = None
        self._item_text.clear()
        self._emit(AudioDone(item_id))
        self._emit(Transcript("assistant", text, True, item_id))
        if text:
            self._history.append(HistoryItem("assistant", text))

    def _on_usage(self, meta: dict[str, Any]) -> None:
        self._usage = wire.parse_usage(meta)

    def _on_tool_call(self, value: dict[str, Any]) -> None:
        for call_id, name, arguments in wire.function_calls(value):
            self._emit(ToolCall(call_id, name, arguments))

    def _on_tool_call_cancellation(self, value: dict[str, Any]) -> None:
        self._emit(SessionNotice("tool_call_cancelled", {"ids": list(value.get("ids") or [])}))

    def _on_resumption_update(self, value: dict[str, Any]) -> None:
        if value.get("resumable") and value.get("newHandle"):
            self._handle = str(value["newHandle"])

    def _on_go_away(self, value: dict[str, Any]) -> None:
        self._go_away_left = wire.parse_duration(value.get("timeLeft"))
        log.info("gemini: goAway, %.1fs left; opening a new connection", self._go_away_left)
        self._start_recovery("go_away")
