"""Amazon Nova Sonic adapter: ``InvokeModelWithBidirectionalStream`` over HTTP/2.

One call is one ``NovaSonicSession``. Underneath it holds one ``_NovaStream`` at a
time: a TLS + HTTP/2 connection carrying a SigV4-signed POST whose body is a stream
of signed event-stream messages (our events) and whose response body is a stream
of event-stream messages (the model's events).

The service closes a stream after about eight minutes, so the session *recycles*:
before the limit (``recycle_after_seconds``), or at once when the service reports
a timeout or throttling or the connection drops, it opens a new stream in the
background, replays the conversation so far (system prompt plus alternating
turns), switches over and closes the old one. Caller audio that arrives during the
switch is buffered (a few seconds) and replayed into the new stream.

``setup.advanced`` (the agent's ``advanced.nova_sonic``) is merged last::

    {"sessionStart": {"inferenceConfiguration": {"topP": 0.95}},
     "promptStart": {"audioOutputConfiguration": {"voiceId": "tiffany"}},
     "recycle_after_seconds": 300}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from agentplatform.errors import ModelConnectError
from agentplatform.realtime import nova_events as ev
from agentplatform.realtime.aws_eventstream import (
    EventSigner,
    EventStreamError,
    MessageDecoder,
    sign_request,
)
from agentplatform.realtime.aws_http2 import Http2Connection, Http2Error, Http2Stream
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

DEFAULT_ENDPOINT = "https://bedrock-runtime.{region}.amazonaws.com"
DEFAULT_VOICE = "matthew"
SERVICE = "bedrock"
DEFAULT_RECYCLE_SECONDS = 360.0
# Exceptions after which a fresh stream is the cure, not a fatal error (spelt as AWS's
# model spells them; a capitalised name never arrives on the stream).
_RECYCLABLE = frozenset({ev.MODEL_TIMEOUT, ev.THROTTLING, ev.SERVICE_UNAVAILABLE})
_RECYCLABLE_TEXT = ("RST_STREAM", "System instability")
_REPLAY_AUDIO_BYTES = 3 * ev.INPUT_RATE * 2  # 3 s of 16 kHz PCM16
_MAX_HISTORY_TURNS = 40
_OPEN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 2.0


def replay_history(history: list[HistoryItem], max_turns: int) -> list[HistoryItem]:
    """Turns Nova accepts as history: same-role neighbours merged, starting with a
    USER turn (so a greeting said before the caller spoke is dropped), the latest
    ``max_turns`` kept."""
    merged: list[HistoryItem] = []
    for item in history:
        if not item.text:
            continue
        if merged and merged[-1].role == item.role:
            merged[-1] = HistoryItem(item.role, f"{merged[-1].text} {item.text}")
        else:
            merged.append(HistoryItem(item.role, item.text))
    merged = merged[-max_turns:]
    while merged and merged[0].role != "user":
        merged.pop(0)
    return merged


class _NovaStream:
    """One signed bidirectional stream: its connection, signer and prompt names."""

    def __init__(self, conn: Http2Connection, stream: Http2Stream, signer: EventSigner) -> None:
        self.conn = conn
        self.stream = stream
        self.signer = signer
        self.prompt = str(uuid.uuid4())
        self.audio_content = str(uuid.uuid4())
        self._lock = asyncio.Lock()
        self.pending_tools: set[str] = set()

    async def send(self, *events: dict[str, Any]) -> None:
        """Sign and send in one critical section: the signature chain is the send order."""
        async with self._lock:
            for event in events:
                await self.stream.send(self.signer.sign(ev.chunk_message(event)))

    async def messages(self) -> AsyncIterator[dict[str, Any] | ev.ServiceException]:
        decoder = MessageDecoder()
        while True:
            data = await self.stream.receive()
            if not data:
                return
            for message in decoder.feed(data):
                item = ev.read_message(message)
                if item is not None:
                    yield item

    async def finish(self) -> None:
        """Close the conversation politely, then the request body and the connection."""
        with contextlib.suppress(Http2Error):
            await self.send(ev.content_end(self.prompt, self.audio_content),
                            ev.prompt_end(self.prompt), ev.session_end())
            async with self._lock:
                await self.stream.send(self.signer.sign(b""), end=True)
            await asyncio.wait_for(self._drain(), _CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await self.conn.close()

    async def _drain(self) -> None:
        with contextlib.suppress(Http2Error, TimeoutError):
            while await self.stream.receive():
                pass


class NovaSonicSession(ModelSession):
    """``ModelSession`` for Nova Sonic (v1 and Nova 2)."""

    capabilities = Capabilities(
        input_rate=ev.INPUT_RATE, output_rate=ev.OUTPUT_RATE, truncates=False, g711=False,
        text_modality=False,
    )

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self._profile = ev.profile_for(setup.model)
        self._region = str(setup.extra.get("region") or "us-east-1")
        self._recycle_after = float(
            setup.advanced.get("recycle_after_seconds")
            or setup.extra.get("recycle_after_seconds") or DEFAULT_RECYCLE_SECONDS
        )
        self._events: asyncio.Queue[ModelEvent | None] = asyncio.Queue()
        self._history: list[HistoryItem] = list(setup.history)
        self._stream: _NovaStream | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._recycling: asyncio.Task[None] | None = None
        self._recycle_due = False
        self._replay: deque[bytes] = deque()
        self._replay_bytes = 0
        self._closed = False
        self._failed = False
        # Per-response state, reset when a response ends.
        self._contents: dict[str, ev.ContentStart] = {}
        self._audio_item = ""
        self._audio_open = False
        self._response_open = False
        self._interrupted = False
        self._usage = Usage()
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.CompletionStart: lambda e: None,
            ev.ContentStart: self._on_content_start,
            ev.TextOutput: self._on_text,
            ev.AudioOutput: self._on_audio,
            ev.ToolUse: self._on_tool_use,
            ev.ContentEnd: self._on_content_end,
            ev.UsageDelta: self._on_usage,
            ev.CompletionEnd: lambda e: self._finish_response(),
        }

    # ------------------------------------------------------------ ModelSession

    async def connect(self) -> None:
        self._stream = await self._open()
        self._start_reader(self._stream)
        self._arm_timer()

    async def send_audio(self, audio: bytes) -> None:
        if self._closed or not audio:
            return
        if self._recycling is not None:
            self._buffer_audio(audio)
        stream = self._stream
        if stream is None:
            return
        try:
            await stream.send(ev.audio_input(stream.prompt, stream.audio_content, audio))
        except Http2Error as exc:
            self._lost(stream, f"send failed: {exc}")

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        self._remember("user", text)
        await self._send_user_text(text, interactive=respond)

    async def request_response(self, instructions: str | None = None) -> None:
        await self._send_user_text(instructions or "Please continue.", interactive=True)

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        stream = self._stream
        if stream is None or call_id not in stream.pending_tools:
            # The stream that asked was recycled away; its successor never heard of the call.
            log.warning("nova: dropping result of %s (%s): no stream awaits it", name, call_id)
            return
        stream.pending_tools.discard(call_id)
        content = str(uuid.uuid4())
        await self._send(stream, *ev.tool_result_block(stream.prompt, content, call_id, output))

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Nova tracks what was heard by itself (it hears the barge-in)."""

    async def cancel_response(self) -> None:
        """Nova stops speaking on barge-in by itself; there is nothing to cancel."""

    async def events(self) -> AsyncIterator[ModelEvent]:  # type: ignore[override]
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                return
            yield event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._recycling is not None:
            self._recycling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recycling
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.finish()
        me = asyncio.current_task()
        for task in self._readers:
            task.cancel()
        # Background work (closing a recycled stream) is bounded by its own timeouts;
        # let it finish so no socket is left half-closed.
        tasks = [t for t in (*self._readers, *self._background) if t is not me]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._events.put_nowait(None)

    # ------------------------------------------------------------ opening a stream

    def _endpoint(self) -> str:
        return (self.setup.url or DEFAULT_ENDPOINT).replace("{region}", self._region).rstrip("/")

    def _setup_events(self, stream: _NovaStream) -> list[dict[str, Any]]:
        setup = self.setup
        advanced = setup.advanced
        tools = bool(setup.tools)
        start = ev.session_start(
            max_tokens=setup.max_output_tokens or 1024,
            top_p=1.0 if tools else 0.9,
            temperature=setup.temperature if setup.temperature is not None else
            (1.0 if tools else 0.7),
            sensitivity=ev.endpointing_sensitivity(setup.turn_detection),
            profile=self._profile,
        )
        prompt = ev.prompt_start(stream.prompt, voice=setup.voice or DEFAULT_VOICE,
                                 tools=setup.tools)
        if isinstance(advanced.get("sessionStart"), dict):
            start = {"event": {"sessionStart": ev.deep_merge(
                start["event"]["sessionStart"], advanced["sessionStart"])}}
        if isinstance(advanced.get("promptStart"), dict):
            prompt = {"event": {"promptStart": ev.deep_merge(
                prompt["event"]["promptStart"], advanced["promptStart"])}}
        events = [start, prompt]
        events += ev.text_block(stream.prompt, str(uuid.uuid4()), "SYSTEM", setup.instructions)
        for item in replay_history(self._history, _MAX_HISTORY_TURNS):
            events += ev.text_block(stream.prompt, str(uuid.uuid4()), item.role.upper(),
                                    item.text)
        return events

    async def _open(self) -> _NovaStream:
        """Connect, sign, send the setup and history; return once the service said 200
        and the audio content is open. Raises ``ModelConnectError``."""
        extra = self.setup.extra
        access_key = self.setup.api_key or str(extra.get("access_key") or "")
        secret_key = str(extra.get("secret_key") or "")
        if not access_key or not secret_key:
            raise ModelConnectError("Nova Sonic needs an AWS access key id and secret key")
        endpoint = self._endpoint()
        parts = urlsplit(endpoint)
        path = f"/model/{quote(self.setup.model, safe='')}/invoke-with-bidirectional-stream"
        headers, seed = sign_request(
            endpoint + path, access_key=access_key, secret_key=secret_key,
            session_token=extra.get("session_token") or None, region=self._region,
            service=SERVICE,
        )
        ssl_context: ssl.SSLContext | None = extra.get("ssl")
        try:
            conn = await Http2Connection.open(
                parts.hostname or "", parts.port or 443, ssl_context=ssl_context,
                timeout=_OPEN_TIMEOUT,
            )
        except Http2Error as exc:
            raise ModelConnectError(f"Nova Sonic: {exc}") from exc
        try:
            h2_stream = await conn.request("POST", path, parts.netloc, headers)
            stream = _NovaStream(conn, h2_stream, EventSigner(secret_key, self._region, SERVICE,
                                                              seed))
            with contextlib.suppress(Http2Error):  # a refusal shows in the status below
                await stream.send(*self._setup_events(stream))
            status, response_headers = await asyncio.wait_for(h2_stream.response(),
                                                              _OPEN_TIMEOUT)
            if status != 200:
                detail = await self._error_body(h2_stream)
                kind = response_headers.get("x-amzn-errortype", "").split(":")[0]
                raise ModelConnectError(f"Nova Sonic refused the stream: HTTP {status} "
                                        f"{kind} {detail}".strip())
            await stream.send(ev.audio_content_start(stream.prompt, stream.audio_content))
            return stream
        except BaseException as exc:  # cancelled mid-setup too: never leak the socket
            await conn.close()
            if isinstance(exc, (Http2Error, TimeoutError)):
                raise ModelConnectError(f"Nova Sonic: stream setup failed: {exc}") from exc
            raise

    @staticmethod
    async def _error_body(stream: Http2Stream) -> str:
        body = b""
        with contextlib.suppress(Http2Error, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while chunk := await stream.receive():
                    body += chunk
        return body.decode("utf-8", "replace")[:500]

    # ------------------------------------------------------------ reading

    def _start_reader(self, stream: _NovaStream) -> None:
        task = asyncio.create_task(self._read(stream), name="nova-reader")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read(self, stream: _NovaStream) -> None:
        reason = "stream ended"
        try:
            async for item in stream.messages():
                if stream is not self._stream:
                    return  # switched away: the old stream's words no longer count
                if isinstance(item, ev.ServiceException):
                    self._on_exception(stream, item)
                    continue
                parsed = ev.parse_output(item)
                if parsed is None:
                    continue
                try:
                    self._handlers[type(parsed)](parsed)
                except Exception:  # a bad handler must not end the call
                    log.exception("nova: handler for %s failed", type(parsed).__name__)
        except (Http2Error, EventStreamError) as exc:
            reason = str(exc)
        self._lost(stream, reason)

    def _on_exception(self, stream: _NovaStream, exc: ev.ServiceException) -> None:
        recyclable = exc.kind in _RECYCLABLE or any(t in exc.message for t in _RECYCLABLE_TEXT)
        self._emit(SessionError(exc.kind, exc.message, fatal=False))
        if recyclable:
            self._start_recycle(exc.kind)
        else:
            self._fail(exc.kind, exc.message)

    def _lost(self, stream: _NovaStream, reason: str) -> None:
        if stream is self._stream and not self._closed:
            self._start_recycle(f"connection lost: {reason}")

    # ------------------------------------------------------------ output events

    def _emit(self, event: ModelEvent) -> None:
        self._events.put_nowait(event)

    def _on_content_start(self, event: ev.ContentStart) -> None:
        self._contents[event.content_id] = event
        if event.role == "USER" and self._response_open:
            self._finish_response()  # the service moved on without a completionEnd
        if event.role == "ASSISTANT" or event.kind == "TOOL":
            self._response_open = True
        if event.kind == "AUDIO":
            self._audio_item, self._audio_open = event.content_id, True

    def _on_text(self, event: ev.TextOutput) -> None:
        if event.interrupted:
            self._barge_in()
            return
        start = self._contents.get(event.content_id)
        stage = start.stage if start is not None else "FINAL"
        role = (event.role or (start.role if start else "")).upper()
        if stage not in ("FINAL", "") or not event.text:
            return  # speculative text is what the model plans to say, not what it said
        if role == "USER":
            self._remember("user", event.text)
            self._emit(Transcript("user", event.text, True, event.content_id))
        elif role == "ASSISTANT":
            self._remember("assistant", event.text)
            self._emit(Transcript("assistant", event.text, True, event.content_id))

    def _on_audio(self, event: ev.AudioOutput) -> None:
        if self._interrupted and event.content_id == self._audio_item:
            return
        self._emit(AudioDelta(event.content_id, event.audio))

    def _on_tool_use(self, event: ev.ToolUse) -> None:
        if self._stream is not None:
            self._stream.pending_tools.add(event.tool_use_id)
        self._emit(ToolCall(event.tool_use_id, event.name, event.arguments))

    def _on_content_end(self, event: ev.ContentEnd) -> None:
        if event.stop_reason == "INTERRUPTED":
            self._barge_in()
        elif event.kind == "AUDIO" and event.content_id == self._audio_item and self._audio_open:
            self._audio_open = False
            self._emit(AudioDone(event.content_id))
        self._contents.pop(event.content_id, None)

    def _on_usage(self, event: ev.UsageDelta) -> None:
        self._usage.add(Usage(input_text=event.input_text, input_audio=event.input_speech,
                              output_text=event.output_text, output_audio=event.output_speech))

    def _barge_in(self) -> None:
        if self._interrupted:
            return  # the text marker and the contentEnd both report the same barge-in
        self._interrupted = True
        self._emit(SpeechStarted(self._audio_item))
        if self._audio_open:
            self._audio_open = False
            self._emit(AudioDone(self._audio_item))

    def _finish_response(self) -> None:
        if not self._response_open and not self._usage.total:
            return
        status = "interrupted" if self._interrupted else "completed"
        self._emit(ResponseDone(status, self._usage))
        self._usage = Usage()
        self._response_open = self._interrupted = self._audio_open = False
        self._contents.clear()
        if self._recycle_due:
            self._start_recycle("connection age")

    # ------------------------------------------------------------ history and text

    def _remember(self, role: str, text: str) -> None:
        if text:
            self._history.append(HistoryItem(role, text))  # type: ignore[arg-type]

    async def _send_user_text(self, text: str, *, interactive: bool) -> None:
        stream = self._stream
        if stream is None:
            return
        if interactive and not self._profile.interactive_text:
            log.info("nova: %s does not answer text turns; sending it as context", self.setup.model)
        await self._send(stream, *ev.text_block(stream.prompt, str(uuid.uuid4()), "USER", text,
                                                interactive=interactive))

    async def _send(self, stream: _NovaStream, *events: dict[str, Any]) -> None:
        try:
            await stream.send(*events)
        except Http2Error as exc:
            self._lost(stream, f"send failed: {exc}")

    # ------------------------------------------------------------ recycling

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._recycle_due = False
        self._timer = asyncio.get_running_loop().call_later(self._recycle_after, self._age_out)

    def _age_out(self) -> None:
        """Time to recycle; wait for a quiet moment unless none comes."""
        self._recycle_due = True
        busy = self._response_open or (self._stream is not None and self._stream.pending_tools)
        if not busy:
            self._start_recycle("connection age")

    def _buffer_audio(self, audio: bytes) -> None:
        self._replay.append(audio)
        self._replay_bytes += len(audio)
        while self._replay_bytes > _REPLAY_AUDIO_BYTES and self._replay:
            self._replay_bytes -= len(self._replay.popleft())

    def _start_recycle(self, reason: str) -> None:
        if self._closed or self._failed or self._recycling is not None:
            return
        self._recycle_due = False
        self._recycling = asyncio.create_task(self._recycle(reason), name="nova-recycle")

    async def _recycle(self, reason: str) -> None:
        try:
            new = await self._open_with_retry()
        except ModelConnectError as exc:
            self._recycling = None
            self._fail("recycle_failed", f"could not reopen the Nova stream ({reason}): {exc}")
            return
        old, self._stream = self._stream, new
        self._start_reader(new)
        if self._response_open:  # the old stream died mid-answer
            if self._audio_open:
                self._emit(AudioDone(self._audio_item))
            self._interrupted = True
            self._finish_response()
        buffered, self._replay, self._replay_bytes = list(self._replay), deque(), 0
        self._recycling = None
        for audio in buffered:
            await self._send(new, ev.audio_input(new.prompt, new.audio_content, audio))
        self._arm_timer()
        turns = len(replay_history(self._history, _MAX_HISTORY_TURNS))
        self._emit(SessionNotice("recycled", {"reason": reason, "history_turns": turns}))
        if old is not None:
            task = asyncio.create_task(old.finish(), name="nova-close-old")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _open_with_retry(self, attempts: int = 3) -> _NovaStream:
        for attempt in range(attempts):
            try:
                return await self._open()
            except ModelConnectError as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("nova: reopening failed (%s); retrying", exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        raise ModelConnectError("unreachable")

    def _fail(self, code: str, message: str) -> None:
        if self._closed or self._failed:
            return
        self._failed = True
        self._emit(SessionError(code, message, fatal=True))
        task = asyncio.create_task(self.close(), name="nova-close")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
