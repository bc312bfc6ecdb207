"""The model socket: a compiled WebSocket client (picows) with a small async interface.

A realtime model socket carries fifty audio appends a second per call and about as many
deltas back. The pure-Python client framed, masked and parsed each of those messages in
Python; picows does it in C, and hands each frame to a callback as it arrives. This
module wraps that callback API in what the realtime sessions need and nothing more:
``connect``, ``send`` (with ``send_now`` for the audio hot path), ``recv``, ``async for``,
``dispatch`` (each message handed to a function inside the socket's callback, so a
stream of deltas wakes no task per message) and ``close``. Failures raise the websockets exception types the sessions already
handle (``InvalidStatus``, ``InvalidHandshake``, ``ConnectionClosed``), so a session
reads the same whichever client opened its socket.

Flow control: ``send`` waits while the transport is above its high-water mark (the peer
reads slowly), as websockets does; ``send_now`` is only for when ``writable`` is true.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import picows
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)
from websockets.frames import Close
from websockets.http11 import Response
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

_TEXT = picows.WSMsgType.TEXT
_BINARY = picows.WSMsgType.BINARY
_CONTINUATION = picows.WSMsgType.CONTINUATION
_CLOSE = picows.WSMsgType.CLOSE
_NORMAL_CODES = (1000, 1001)  # a close with these ends iteration quietly
_ABNORMAL = 1006  # the socket ended without a close frame
_TOO_BIG = 1009
CLOSE_TIMEOUT_SECONDS = 10.0  # as websockets: how long ``close`` waits for the peer


class ModelSocket(picows.WSListener):
    """One client WebSocket; created by ``connect``."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self._max_size = max_size
        self._ws: Any = None  # picows.WSTransport
        self.transport: Any = None  # the asyncio transport under it (buffer size, abort)
        self._messages: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused
        self._parts: list[bytes] = []
        self._parts_kind: Any = None
        self._parts_size = 0
        self._rcvd: Close | None = None
        self._sent: Close | None = None
        self._rcvd_first = False
        self._disconnected = False
        self.close_code: int | None = None
        # While ``dispatch`` runs: the function each message goes to, and why it ended.
        self._handler: Callable[[str | bytes], bool] | None = None
        self._handler_stopped = False
        self._handler_error: BaseException | None = None

    # ------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: Any) -> None:
        self._ws = transport
        self.transport = transport.underlying_transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        if frame.fin and kind is _TEXT:
            self._deliver(frame.get_payload_as_utf8_text())
        elif frame.fin and kind is _BINARY:
            self._deliver(frame.get_payload_as_bytes())
        elif kind is _TEXT or kind is _BINARY:  # the first fragment of a message
            self._parts, self._parts_kind = [frame.get_payload_as_bytes()], kind
            self._parts_size = len(self._parts[0])
        elif kind is _CONTINUATION and self._parts_kind is not None:
            self._parts.append(frame.get_payload_as_bytes())
            self._parts_size += len(self._parts[-1])
            if self._parts_size > self._max_size:
                self._fail(_TOO_BIG, "message too big")
            elif frame.fin:
                data = b"".join(self._parts)
                kind, self._parts, self._parts_kind = self._parts_kind, [], None
                self._deliver(data.decode() if kind is _TEXT else data)
        elif kind is _CLOSE:
            code = int(frame.get_close_code())
            self._rcvd = Close(code, frame.get_close_message().decode(errors="replace")
                               if frame.get_close_message() else "")
            self.close_code = code
            self._rcvd_first = self._sent is None
            if not transport.is_close_frame_sent:
                self._sent = Close(code, "")
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        # PING is answered by picows itself; PONG needs nothing.

    def on_ws_disconnected(self, transport: Any) -> None:
        self._disconnected = True
        if self.close_code is None:
            self.close_code = _ABNORMAL
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # ------------------------------------------------------------ receiving

    def _deliver(self, message: str | bytes) -> None:
        handler = self._handler
        if handler is None:
            self._messages.append(message)
            self._wake()
            return
        try:
            stop = handler(message)
        except Exception as exc:  # noqa: BLE001 - raised again from ``dispatch``, in its task
            self._handler_error = exc
            stop = True
        if stop:
            self._handler = None
            self._handler_stopped = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _closed_error(self) -> ConnectionClosed:
        # Which close frame came first, when there were both (websockets requires it).
        order = self._rcvd_first if self._rcvd is not None and self._sent is not None else None
        if self._rcvd is not None and self._rcvd.code in _NORMAL_CODES:
            return ConnectionClosedOK(self._rcvd, self._sent, order)
        return ConnectionClosedError(self._rcvd, self._sent, order)

    async def recv(self) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the socket has ended."""
        while not self._messages:
            if self._disconnected:
                raise self._closed_error()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()

    async def dispatch(self, handler: Callable[[str | bytes], bool]) -> bool:
        """Hand every message to ``handler`` as it arrives, in the socket's callback.

        A delta then costs no task wake-up and no queue hop between the socket and the
        session. Messages received before this call go first, in order. Ends when
        ``handler`` returns true (returns True; later messages stay for ``recv``), or
        when the peer closes normally (returns False); an abnormal end raises
        ``ConnectionClosed`` as ``recv`` does, and an exception from ``handler`` is
        raised here.
        """
        if self._handler is not None:
            raise RuntimeError("this socket is already dispatching")
        while self._messages:
            if handler(self._messages.popleft()):
                return True
        self._handler, self._handler_stopped, self._handler_error = handler, False, None
        try:
            while not self._handler_stopped:
                if self._disconnected:
                    error = self._closed_error()
                    if isinstance(error, ConnectionClosedOK):
                        return False
                    raise error
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if self._handler_error is not None:
                raise self._handler_error
            return True
        finally:
            self._handler = None
            self._handler_error = None

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Messages until the peer closes normally (an abnormal end raises)."""
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    # ------------------------------------------------------------ sending

    @property
    def writable(self) -> bool:
        """Open, and the peer keeps up: ``send_now`` may be used."""
        return self._drained is None and not self._disconnected and self._sent is None

    def send_now(self, message: str) -> None:
        """Frame and write a text message now; only when ``writable``."""
        self._ws.send(_TEXT, message.encode())

    async def send(self, message: str | bytes) -> None:
        """Send one message, waiting while the peer is behind; ``ConnectionClosed``
        once the socket is closing or closed."""
        if self._disconnected or self._sent is not None:
            raise self._closed_error()
        if isinstance(message, str):
            self._ws.send(_TEXT, message.encode())
        else:
            self._ws.send(_BINARY, message)
        drained = self._drained
        if drained is not None:
            await asyncio.shield(drained)

    def _fail(self, code: int, reason: str) -> None:
        if not self._ws.is_close_frame_sent:
            self._sent = Close(code, reason)
            self._ws.send_close(picows.WSCloseCode(code), reason.encode())
        self._ws.disconnect()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake, then wait for the socket to end (aborted after the timeout)."""
        if not self._disconnected and not self._ws.is_close_frame_sent:
            self._sent = Close(code, reason)
            self._ws.send_close(picows.WSCloseCode(code), reason.encode())
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await self._ws.wait_disconnected()
        except TimeoutError:
            self.transport.abort()


async def connect(url: str, *, additional_headers: Mapping[str, str] | Iterable[tuple[str, str]],
                  max_size: int) -> ModelSocket:
    """Open a client WebSocket (ws:// or wss://); upgrade failures raise websockets'
    ``InvalidStatus`` (with the HTTP status) or ``InvalidHandshake``, a refused or
    unreachable host ``OSError``. The caller bounds the time. A proxy set in the
    environment (``HTTPS_PROXY``, ``NO_PROXY``…) is used as websockets would."""
    try:
        _, socket = await picows.ws_connect(
            lambda: ModelSocket(max_size), url, extra_headers=additional_headers,
            max_frame_size=max_size, websocket_handshake_timeout=None, enable_auto_pong=True,
            proxy=get_proxy(parse_uri(url)))
    except picows.WSInvalidStatusError as exc:
        status = exc.response.status if exc.response is not None else 0
        raise InvalidStatus(Response(int(status), "", Headers())) from exc
    except picows.WSError as exc:
        raise InvalidHandshake(str(exc)) from exc
    return socket
