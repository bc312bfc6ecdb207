"""The OpenAI Realtime (GA) adapter: one WebSocket per call, spoken as ``ModelSession``.

Serves OpenAI, Azure OpenAI (same protocol, different URL and auth header) and, through
a small subclass, xAI. Wire shapes come from ``openai_events``; this class owns the
socket, turns server events into normalized events through a dict of ``_on_<event>``
handlers, and keeps the call alive across a dropped socket or an expired session by
reconnecting and replaying the conversation so far.

The audio path never waits here on anything but the socket: ``send_audio`` drops a
frame (and counts it) rather than raise or buffer while the socket is being replaced.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agentplatform.errors import ModelConnectError
from agentplatform.realtime import openai_events as wire
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
    SpeechStopped,
    ToolCall,
    Transcript,
)
from agentplatform.realtime.ws_client import ModelSocket, connect

logger = logging.getLogger(__name__)

_MAX_MESSAGE = 16 * 1024 * 1024


class SessionState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.NEW: frozenset({SessionState.CONNECTING, SessionState.CLOSED}),
    SessionState.CONNECTING: frozenset({SessionState.OPEN, SessionState.CLOSED}),
    SessionState.OPEN: frozenset({SessionState.RECONNECTING, SessionState.CLOSED}),
    SessionState.RECONNECTING: frozenset({SessionState.OPEN, SessionState.CLOSED}),
    SessionState.CLOSED: frozenset({SessionState.CLOSED}),
}

# Server events that need no normalized event; listed so they are not logged as unknown.
_QUIET_EVENTS = (
    "session.created", "session.updated", "conversation.created",
    "conversation.item.created", "conversation.item.added", "conversation.item.done",
    "conversation.item.truncated", "conversation.item.deleted",
    "input_audio_buffer.committed", "input_audio_buffer.cleared",
    "response.output_item.added", "response.content_part.added", "response.content_part.done",
    "response.function_call_arguments.delta", "rate_limits.updated",
)


class OpenAIRealtimeSession(ModelSession):
    """A live call with an OpenAI-protocol realtime model (OpenAI, Azure OpenAI)."""

    # Dialect knobs a subclass (xAI) changes as data.
    first_event = "session.created"
    advanced_key = "openai_realtime"

    def __init__(
        self,
        setup: SessionSetup,
        *,
        connect_timeout: float = 10.0,
        reconnect_attempts: int = 3,
        reconnect_backoff: float = 0.25,
    ) -> None:
        super().__init__(setup)
        ulaw = setup.audio_format == "g711_ulaw"
        rate = 8000 if ulaw else 24000
        self.capabilities = Capabilities(
            input_rate=rate, output_rate=rate, truncates=True, g711=ulaw, text_modality=True
        )
        self._connect_timeout = connect_timeout
        self._reconnect_attempts = reconnect_attempts
        self._reconnect_backoff = reconnect_backoff
        self._bytes_per_ms = wire.BYTES_PER_MS[setup.audio_format]
        self._state = SessionState.NEW
        self._ws: ModelSocket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[ModelEvent | None] = asyncio.Queue()
        # Set by ``deliver_to``: events go straight to it instead of through ``_queue``.
        self._sink: Callable[[ModelEvent], None] | None = None
        self._events_ended = False
        self._session_config: dict[str, Any] = {}
        self._reconnect_reason: str | None = None
        self._pending: list[str] = []  # control events held while the socket is replaced
        # Responses the server is running, and those already being cancelled.
        self._active: set[str] = set()
        self._cancelling: set[str] = set()
        self._tool_calls_seen: set[str] = set()
        # The conversation so far, replayed on reconnect.
        self._history: list[HistoryItem] = list(setup.history)
        self._assistant_text: dict[str, tuple[int, str]] = {}  # item id -> (index, full text)
        self._item_audio_bytes: dict[str, int] = {}
        self._heard_ms: dict[str, int] = {}
        # Counters worth a look in a benchmark or a post-mortem.
        self.dropped_audio = 0
        self.malformed = 0
        self.reconnects = 0
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = self._build_handlers()

    # ------------------------------------------------------------ dialect hooks

    def build_session(self) -> dict[str, Any]:
        """The ``session`` object of ``session.update`` for this dialect."""
        return wire.build_session(self.setup, self.advanced_key)

    def turn_detection_of(self, session: dict[str, Any]) -> dict[str, Any] | None:
        return ((session.get("audio") or {}).get("input") or {}).get("turn_detection")

    def url(self) -> str:
        return wire.session_url(self.setup)

    # ------------------------------------------------------------ state

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def history(self) -> list[HistoryItem]:
        """The finished turns so far (what a reconnect or a fallback model replays)."""
        return list(self._history)

    def _transition(self, new: SessionState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise RuntimeError(f"session state: cannot go from {self._state} to {new}")
        self._state = new

    # ------------------------------------------------------------ connecting

    async def connect(self) -> None:
        self._transition(SessionState.CONNECTING)
        try:
            self._ws = await self._open()
            await self._replay(self._ws)
        except ConnectionClosed as exc:
            self._state = SessionState.CLOSED
            raise ModelConnectError(f"realtime socket closed during setup: {exc}") from exc
        except ModelConnectError:
            self._state = SessionState.CLOSED
            raise
        self._transition(SessionState.OPEN)
        self._reader = asyncio.create_task(self._run(), name="openai-realtime-reader")

    async def _open(self) -> ModelSocket:
        """Open the socket, wait for the greeting, configure, wait for ``session.updated``."""
        url = self.url()
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await connect(url, additional_headers=wire.auth_headers(self.setup),
                                   max_size=_MAX_MESSAGE)
                try:
                    await self._expect(ws, self.first_event)
                    self._session_config = self.build_session()
                    await ws.send(wire.dumps(wire.session_update(self._session_config)))
                    await self._expect(ws, "session.updated")
                except BaseException:
                    await _close_quietly(ws)
                    raise
        except TimeoutError as exc:
            raise ModelConnectError(f"realtime session setup timed out ({url})") from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ModelConnectError(f"realtime upgrade refused: HTTP {status} ({url})") from exc
        except (OSError, InvalidHandshake, ConnectionClosed) as exc:
            raise ModelConnectError(f"cannot open realtime socket ({url}): {exc}") from exc
        return ws

    @staticmethod
    async def _expect(ws: ModelSocket, wanted: str) -> dict[str, Any]:
        """Read until ``wanted`` arrives; an ``error`` first fails the setup."""
        while True:
            event = wire.parse(await ws.recv())
            if event is None:
                continue
            if event["type"] == wanted:
                return event
            if event["type"] == "error":
                code, message = wire.error_fields(event)
                raise ModelConnectError(f"realtime session refused: {code}: {message}")
            logger.debug("realtime setup: skipping %s while waiting for %s", event["type"], wanted)

    async def _replay(self, ws: ModelSocket) -> None:
        """Send the conversation so far, then whatever the bridge asked for meanwhile."""
        for item in self._history:
            await ws.send(wire.dumps(wire.history_item(item)))
        pending, self._pending = self._pending, []
        for text in pending:
            await ws.send(text)

    # ------------------------------------------------------------ reading

    async def _run(self) -> None:
        try:
            while True:
                reason = await self._read(self._ws)
                if self._state is SessionState.CLOSED:
                    return
                if not await self._reconnect(reason):
                    self._state = SessionState.CLOSED
                    self._emit(SessionError("session_lost", f"realtime session lost: {reason}",
                                            fatal=True))
                    return
        finally:
            self._end_events()

    async def _read(self, ws: ModelSocket | None) -> str:
        """Dispatch events until the socket ends or a handler asks for a new session."""
        if ws is None:
            return "no socket"
        try:
            # Handled in the socket's callback: no reader wake-up per delta.
            if await ws.dispatch(self._dispatch_until_reconnect):
                return self._reconnect_reason or "dispatch stopped"
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else "none"
            return f"connection lost (close code {code})"
        return f"connection closed by server (close code {ws.close_code})"

    def _dispatch_until_reconnect(self, raw: str | bytes) -> bool:
        """Dispatch one event; true once a handler asked for a new session."""
        event = wire.parse(raw)
        if event is None:
            self.malformed += 1
            logger.warning("realtime: skipping malformed event (%d so far)", self.malformed)
            return False
        handler = self._handlers.get(event["type"])
        if handler is None:
            logger.debug("realtime: skipping unknown event %s", event["type"])
            return False
        try:
            handler(event)
        except Exception:
            logger.exception("realtime: handler for %s failed; skipped", event["type"])
        return bool(self._reconnect_reason)

    async def _reconnect(self, reason: str) -> bool:
        """Open a fresh session and replay history; False when every attempt failed."""
        self._transition(SessionState.RECONNECTING)
        logger.info("realtime: reconnecting (%s)", reason)
        if self._ws is not None:
            await _close_quietly(self._ws)
        self._abandon_responses()
        for attempt in range(1, self._reconnect_attempts + 1):
            if self._state is SessionState.CLOSED:
                return True
            try:
                ws = await self._open()
                await self._replay(ws)
            except (ModelConnectError, ConnectionClosed) as exc:
                logger.warning("realtime: reconnect attempt %d failed: %s", attempt, exc)
                await asyncio.sleep(self._reconnect_backoff * 2 ** (attempt - 1))
                continue
            if self._state is SessionState.CLOSED:
                await _close_quietly(ws)
                return True
            self._ws = ws
            self._reconnect_reason = None
            self._transition(SessionState.OPEN)
            self.reconnects += 1
            self._emit(SessionNotice("reconnected", {
                "reason": reason, "attempt": attempt, "replayed_items": len(self._history),
            }))
            return True
        return False

    def _abandon_responses(self) -> None:
        """Responses of the lost socket will never finish; say so once each."""
        for _ in self._active:
            self._emit(ResponseDone(status="failed", usage=None))
        self._active.clear()
        self._cancelling.clear()

    def _emit(self, event: ModelEvent) -> None:
        sink = self._sink
        if sink is not None:
            sink(event)
        else:
            self._queue.put_nowait(event)

    def deliver_to(self, sink: Callable[[ModelEvent], None]) -> None:
        """Hand every later event to ``sink`` as it happens, in order, instead of
        through ``events()``: a delta then reaches the bridge inside the socket's
        callback, with no queue and no task wake-up. Events already queued go to it
        first. ``events()`` still ends when the session does (it yields nothing
        more). ``sink`` must not raise."""
        queue = self._queue
        ended = False
        while not queue.empty():
            event = queue.get_nowait()
            if event is None:
                ended = True
            else:
                sink(event)
        self._sink = sink
        if ended:
            queue.put_nowait(None)

    def _end_events(self) -> None:
        """Let ``events()`` finish, once."""
        if not self._events_ended:
            self._events_ended = True
            self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[ModelEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    # ------------------------------------------------------------ sending

    async def _send(self, text: str, *, hold: bool = True) -> bool:
        """Send a control event; while the socket is replaced, hold it for after replay."""
        ws = self._ws
        if self._state is SessionState.OPEN and ws is not None:
            try:
                await ws.send(text)
                return True
            except ConnectionClosed:
                pass
        if hold and self._state in (SessionState.OPEN, SessionState.RECONNECTING):
            self._pending.append(text)
        else:
            logger.debug("realtime: dropped a control event in state %s", self._state)
        return False

    async def send_audio(self, audio: bytes) -> None:
        ws = self._ws
        if self._state is not SessionState.OPEN or ws is None:
            self.dropped_audio += 1
            return
        text = wire.audio_append(audio)
        if ws.writable:
            # Fifty appends a second per call: written at once, no await. A closing
            # socket or a model that reads slowly takes ``send``, which waits for it
            # or raises ``ConnectionClosed``.
            ws.send_now(text)
            return
        try:
            await ws.send(text)
        except ConnectionClosed:
            self.dropped_audio += 1

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        # History first: if the socket is being replaced, the replay carries this turn.
        self._history.append(HistoryItem(role="user", text=text))
        await self._send(wire.dumps(wire.user_text_item(text)), hold=False)
        if respond:
            await self._send(wire.dumps(wire.response_create()))

    async def request_response(self, instructions: str | None = None) -> None:
        await self._send(wire.dumps(wire.response_create(instructions)))

    async def send_tool_result(self, call_id: str, name: str, output: str, *,
                               respond: bool = True) -> None:
        """The tool's output; ``respond=False`` holds the reply until the last of several
        parallel calls has its result (one response at a time per conversation)."""
        await self._send(wire.dumps(wire.tool_output(call_id, output)))
        if respond:
            await self._send(wire.dumps(wire.response_create()))

    async def add_assistant_text(self, text: str) -> None:
        """An assistant line said without the model (a fixed greeting), so it knows."""
        self._history.append(HistoryItem(role="assistant", text=text))
        await self._send(wire.dumps(wire.assistant_text_item(text)), hold=False)

    async def replace_assistant(self, item_id: str, text: str) -> None:
        """Replace an assistant item by ``text`` (what was heard), server-side and in the
        replay history: delete the item, then add ``text`` as an assistant message.

        Text modality has no audio to truncate, so this is how a barge-in in the cascade
        keeps the model from believing it said what the caller never heard.
        """
        entry = self._assistant_text.pop(item_id, None)
        if entry is not None:
            index, _ = entry
            if text:
                self._history[index] = HistoryItem(role="assistant", text=text)
            else:
                del self._history[index]
                self._assistant_text = {
                    k: (i - 1 if i > index else i, t) for k, (i, t) in self._assistant_text.items()
                }
        elif text:
            self._history.append(HistoryItem(role="assistant", text=text))
        await self._send(wire.dumps(wire.item_delete(item_id)), hold=False)
        if text:
            await self._send(wire.dumps(wire.assistant_text_item(text)), hold=False)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the server what was heard; the bridge clamps to the audio it played."""
        self._heard_ms[item_id] = audio_end_ms
        self._apply_heard(item_id)
        await self._send(wire.dumps(wire.truncate(item_id, audio_end_ms)), hold=False)

    async def cancel_response(self) -> None:
        """Cancel the running response, unless none runs or it is already being cancelled."""
        if not self._active - self._cancelling:
            return
        self._cancelling |= self._active
        await self._send(wire.dumps(wire.response_cancel()), hold=False)

    async def close(self) -> None:
        self._state = SessionState.CLOSED
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._ws is not None:
            await _close_quietly(self._ws)
        self._end_events()

    # ------------------------------------------------------------ history

    def _remember_assistant(self, item_id: str, text: str) -> None:
        if not text:
            return
        self._history.append(HistoryItem(role="assistant", text=text))
        self._assistant_text[item_id] = (len(self._history) - 1, text)
        self._apply_heard(item_id)

    def _apply_heard(self, item_id: str) -> None:
        """Cut a truncated answer in history down to what the caller heard."""
        entry = self._assistant_text.get(item_id)
        heard = self._heard_ms.get(item_id)
        if entry is None or heard is None:
            return
        index, full = entry
        total_ms = self._item_audio_bytes.get(item_id, 0) // self._bytes_per_ms
        self._history[index] = HistoryItem(
            role="assistant", text=wire.heard_text(full, heard, total_ms)
        )

    # ------------------------------------------------------------ handlers

    def _build_handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            name: self._on_quiet for name in _QUIET_EVENTS
        }
        handlers.update({
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio.done": self._on_audio_done,
            "response.output_audio_transcript.delta": self._on_assistant_delta,
            "response.output_audio_transcript.done": self._on_assistant_done,
            "response.output_text.delta": self._on_assistant_delta,
            "response.output_text.done": self._on_assistant_done,
            "conversation.item.input_audio_transcription.delta": self._on_user_delta,
            "conversation.item.input_audio_transcription.completed": self._on_user_done,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "response.function_call_arguments.done": self._on_function_call_done,
            "response.output_item.done": self._on_output_item_done,
            "error": self._on_error,
        })
        # Beta-style names some OpenAI-protocol servers still send (xAI text deltas).
        handlers.update({
            "response.audio.delta": self._on_audio_delta,
            "response.audio.done": self._on_audio_done,
            "response.audio_transcript.delta": self._on_assistant_delta,
            "response.audio_transcript.done": self._on_assistant_done,
            "response.text.delta": self._on_assistant_delta,
            "response.text.done": self._on_assistant_done,
        })
        return handlers

    def _on_quiet(self, event: dict[str, Any]) -> None:
        return None

    def _on_response_created(self, event: dict[str, Any]) -> None:
        self._active.add(str((event.get("response") or {}).get("id", "")))

    def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        response_id = str(response.get("id", ""))
        self._active.discard(response_id)
        self._cancelling.discard(response_id)
        status = str(response.get("status") or "completed")
        if status == "completed":
            for item in response.get("output") or []:
                if isinstance(item, dict) and item.get("type") == "function_call":
                    self._tool_call(item.get("call_id"), item.get("name"), item.get("arguments"))
        self._emit(ResponseDone(status=status, usage=wire.usage(response)))

    def _on_audio_delta(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id", "")
        if type(item_id) is not str:
            item_id = str(item_id)
        audio = binascii.a2b_base64(event.get("delta") or "")  # what b64decode does, minus its wrapper
        sizes = self._item_audio_bytes
        sizes[item_id] = sizes.get(item_id, 0) + len(audio)
        self._emit(AudioDelta(item_id, audio))

    def _on_audio_done(self, event: dict[str, Any]) -> None:
        self._emit(AudioDone(item_id=str(event.get("item_id", ""))))

    def _on_assistant_delta(self, event: dict[str, Any]) -> None:
        self._emit(Transcript("assistant", str(event.get("delta") or ""), False,
                              str(event.get("item_id", ""))))

    def _on_assistant_done(self, event: dict[str, Any]) -> None:
        text = str(event.get("transcript") or event.get("text") or "")
        item_id = str(event.get("item_id", ""))
        self._remember_assistant(item_id, text)
        self._emit(Transcript("assistant", text, True, item_id))

    def _on_user_delta(self, event: dict[str, Any]) -> None:
        self._emit(Transcript("user", str(event.get("delta") or ""), False,
                              str(event.get("item_id", ""))))

    def _on_user_done(self, event: dict[str, Any]) -> None:
        text = str(event.get("transcript") or "")
        if text:
            self._history.append(HistoryItem(role="user", text=text))
        self._emit(Transcript("user", text, True, str(event.get("item_id", ""))))

    def _on_speech_started(self, event: dict[str, Any]) -> None:
        td = self.turn_detection_of(self._session_config) or {}
        if td.get("interrupt_response", True):
            # The server cancels the running response itself; a second cancel is noise.
            self._cancelling |= self._active
        self._emit(SpeechStarted(item_id=str(event.get("item_id", ""))))

    def _on_speech_stopped(self, event: dict[str, Any]) -> None:
        # Server VAD says so after silence_duration_ms of quiet: the caller has waited that.
        td = self.turn_detection_of(self._session_config) or {}
        waited = td.get("silence_duration_ms") if td.get("type") == "server_vad" else None
        self._emit(SpeechStopped(item_id=str(event.get("item_id", "")),
                                 waited_ms=float(waited) if isinstance(waited, int | float)
                                 else 0.0))

    def _on_function_call_done(self, event: dict[str, Any]) -> None:
        self._tool_call(event.get("call_id"), event.get("name"), event.get("arguments"))

    def _on_output_item_done(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        if item.get("type") == "function_call" and item.get("status", "completed") == "completed":
            self._tool_call(item.get("call_id"), item.get("name"), item.get("arguments"))

    def _tool_call(self, call_id: Any, name: Any, arguments: Any) -> None:
        """Emit a tool call once, whichever of its several announcements comes first."""
        if not call_id or not name or call_id in self._tool_calls_seen:
            return
        self._tool_calls_seen.add(str(call_id))
        self._emit(ToolCall(call_id=str(call_id), name=str(name), arguments=str(arguments or "{}")))

    def _on_error(self, event: dict[str, Any]) -> None:
        code, message = wire.error_fields(event)
        if code == "session_expired":
            self._reconnect_reason = "session_expired"
            return
        if code == "response_cancel_not_active":
            logger.debug("realtime: cancel raced the end of the response; ignored")
            return
        self._emit(SessionError(code=code, message=message, fatal=False))


async def _close_quietly(ws: ModelSocket) -> None:
    """Close a socket we are done with; a dead peer must not hold the call up."""
    try:
        async with asyncio.timeout(1.0):
            await ws.close()
    except (TimeoutError, ConnectionClosed, OSError):
        ws.transport.abort()
