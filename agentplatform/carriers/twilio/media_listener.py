"""Twilio Media Streams on a compiled WebSocket server (picows), beside the FastAPI app.

A media stream is fifty small JSON messages a second each way. On the main port each
one passes through uvicorn's WebSocket protocol (websockets' sans-I/O parser in
Python), an asyncio queue and Starlette's ASGI wrappers. With ``MEDIA_LISTEN=HOST:PORT``
the streams have their own port, served by picows: frames are parsed and written in C
and handed to the call as they arrive. Nothing else changes: ``MediaSocket`` gives the
stream code (``TwilioCallAudio``) the few Starlette ``WebSocket`` methods it uses, and
the call itself runs the same code as the FastAPI route (``routes.TwilioEndpoints``):
the signature check, the single-use token, ``handle_call``.

Which URL Twilio is sent to (the TwiML ``<Stream url>``, and the URL its signature on
the upgrade covers): ``MEDIA_PUBLIC_URL`` when set (``wss://media.example.com`` or a
whole ``wss://…/twilio/media``), else ``wss://`` + the host Twilio reached the webhook
on (``PUBLIC_URL``'s, or the request's ``Host``) + ``:`` + the listener's port.

Refusals: a request for any other path gets an HTTP 403 on the upgrade, and a ``Host``
this server does not answer to an HTTP 400 (as the main port's middleware does); a bad
signature, a bad or spent token: the upgrade is accepted and the stream closed 1008, by
the shared route code, exactly as on the main port.

With ``serve --workers N`` the supervisor binds the listener once and every worker
accepts on that socket (``MEDIA_FD_ENV``), as with the main port, so a worker busy with
its calls takes fewer new streams, and a worker that restarts drops no waiting one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import picows
from starlette.datastructures import URL
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from agentplatform.config import Settings
from agentplatform.errors import PlatformError
from agentplatform.serving import MEDIA_FD_ENV, bind
from agentplatform.web.hosts import BadHost, HostPolicy, split_host

log = logging.getLogger(__name__)

MEDIA_PATH = "/twilio/media"
MAX_MESSAGE_BYTES = 1 << 20  # as the main port's ws_max_size
# Frames waiting for the call before the socket stops reading (uvicorn's max queue is 32).
MAX_QUEUED_FRAMES = 64
RESUME_READING_AT = 16
CLOSE_TIMEOUT_SECONDS = 5.0  # after our close frame, how long the peer has to answer it
STOP_GRACE_SECONDS = 5.0  # at shutdown, how long streams still open get to finish
PING_SECONDS = 20.0  # as uvicorn: a ping after 20 s without data, 20 s for its pong

_TEXT = picows.WSMsgType.TEXT
_BINARY = picows.WSMsgType.BINARY
_CONTINUATION = picows.WSMsgType.CONTINUATION
_CLOSE = picows.WSMsgType.CLOSE
_ABNORMAL = 1006
_INVALID_DATA = 1007
_TOO_BIG = 1009
_RECEIVE = "websocket.receive"

Serve = Callable[["MediaSocket", str], Awaitable[None]]


def _text_header(size: int) -> bytes:
    """The header of a server's (unmasked) final text frame of ``size`` bytes."""
    if size < 126:
        return bytes((0x81, size))
    if size < 0x10000:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"MEDIA_LISTEN wants HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def media_stream_url(settings: Settings, host_header: str, port: int) -> str:
    """The ``wss://`` URL of the listener's streams, as the TwiML names it and Twilio
    signs it (see the module docstring)."""
    if settings.media_public_url:
        base = urlsplit(settings.media_public_url)
        path = base.path.rstrip("/")
        if not path.endswith(MEDIA_PATH):
            path += MEDIA_PATH
        return f"wss://{base.netloc}{path}"
    if settings.public_url:
        name = urlsplit(settings.public_url).hostname or ""
    else:
        try:
            name, _ = split_host(host_header)
        except BadHost:
            name = ""
    return f"wss://{_url_host(name or '127.0.0.1')}:{port}{MEDIA_PATH}"


class MediaSocket(picows.WSListener):
    """One accepted stream, with the Starlette ``WebSocket`` surface the stream code
    uses: ``accept``, ``receive`` (ASGI-style messages), ``receive_text``,
    ``send_text``/``send_bytes``, ``close``, ``headers``, ``query_params``, ``url``,
    ``client``.

    Frames arrive in picows' callback and wait in a deque; ``receive`` waits on a
    future only when the deque is empty. Or, beyond Starlette's surface, ``dispatch``
    hands each message to a function inside that callback (no deque, no task wake-up
    per frame), as the model socket's ``dispatch`` does. Sends are framed in C and written at once;
    while the transport is over its high-water mark a send waits first (as uvicorn
    does). Once our close is sent a send raises ``WebSocketDisconnected``, once the
    peer is gone ``WebSocketDisconnect(1006)``: what Starlette raises.
    """

    def __init__(self, path: str, query: str, headers: Any, *,
                 on_open: Callable[[MediaSocket], None] | None = None,
                 max_size: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__()
        self._on_open = on_open
        self.path = path
        self.headers = headers  # case-insensitive, like Starlette's
        self.query_params = dict(parse_qsl(query, keep_blank_values=True))
        self.url = URL(f"ws://{headers.get('host', '')}{path}" + (f"?{query}" if query else ""))
        self.client: tuple[str, int] | None = None
        self._max_size = max_size
        self._ws: Any = None  # picows.WSTransport
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused
        self._reading_paused = False
        self._parts: list[bytes] = []
        self._parts_kind: Any = None
        self._parts_size = 0
        self._close_sent = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._disconnected = False
        self._disconnect_delivered = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.stream_url = ""  # the URL Twilio was told (set by the listener)
        self.task: asyncio.Task[None] | None = None  # the stream's handler (the listener's)
        # While ``dispatch`` runs: the function each message goes to, and why it ended.
        self._handler: Callable[[str | bytes], bool] | None = None
        self._handler_stopped = False
        self._handler_error: BaseException | None = None
        self._held = False  # ``hold_reading``: the call is behind, stop reading the socket

    # ------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: Any) -> None:
        self._ws = transport
        self._loop = asyncio.get_running_loop()
        peer = transport.underlying_transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        if self._on_open is not None:
            self._on_open(self)

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        if frame.fin and kind is _TEXT:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._fail(_INVALID_DATA, "invalid UTF-8")
                return
            if self._handler is not None:
                self._deliver(text)
            else:
                self._push({"type": _RECEIVE, "text": text})
        elif frame.fin and kind is _BINARY:
            self._received(frame.get_payload_as_bytes())
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
                if kind is _BINARY:
                    self._received(data)
                    return
                try:
                    text = data.decode()
                except UnicodeDecodeError:
                    self._fail(_INVALID_DATA, "invalid UTF-8")
                    return
                self._received(text)
        elif kind is _CLOSE:
            self.close_code = int(frame.get_close_code())
            self.close_reason = frame.get_close_reason() or ""
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        # PING is answered by picows (auto-pong); a PONG needs nothing.

    def on_ws_disconnected(self, transport: Any) -> None:
        self._disconnected = True
        if self.close_code is None:
            self.close_code = _ABNORMAL
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _received(self, data: str | bytes) -> None:
        """A whole message: to ``dispatch``'s function, or into the deque."""
        if self._handler is not None:
            self._deliver(data)
        elif type(data) is str:
            self._push({"type": _RECEIVE, "text": data})
        else:
            self._push({"type": _RECEIVE, "bytes": data})

    def _deliver(self, data: str | bytes) -> None:
        handler = self._handler
        assert handler is not None
        try:
            stop = handler(data)
        except Exception as exc:  # noqa: BLE001 - raised again from ``dispatch``, in its task
            self._handler_error = exc
            stop = True
        if stop:
            self._handler = None
            self._handler_stopped = True
            self._wake()

    def _push(self, message: dict[str, Any]) -> None:
        frames = self._frames
        frames.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(frames) > MAX_QUEUED_FRAMES and not self._reading_paused:
            self._reading_paused = True
            self._ws.underlying_transport.pause_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, code: int, reason: str) -> None:
        """A frame we cannot take: close with ``code`` and drop the connection."""
        log.info("media socket: closing %d (%s)", code, reason)
        if not self._ws.is_close_frame_sent:
            self._close_sent = True
            self._ws.send_close(picows.WSCloseCode(code), reason.encode())
        self._ws.disconnect()

    # ------------------------------------------------------------ Starlette's surface

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """The upgrade was answered before the stream code ran: nothing left to do."""

    async def receive(self) -> dict[str, Any]:
        """The next ASGI-style message: ``websocket.receive`` with ``text`` or
        ``bytes``, then one ``websocket.disconnect``; after that it raises."""
        frames = self._frames
        while not frames:
            if self._disconnected:
                if self._disconnect_delivered:
                    raise WebSocketDisconnected(
                        'Cannot call "receive" once a disconnect message has been received.')
                self._disconnect_delivered = True
                return {"type": "websocket.disconnect", "code": self.close_code,
                        "reason": self.close_reason}
            self._waiter = self._loop.create_future()  # type: ignore[union-attr]
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = frames.popleft()
        if self._reading_paused and len(frames) <= RESUME_READING_AT:
            self._reading_paused = False
            self._resume_reading()
        return message

    async def dispatch(self, handler: Callable[[str | bytes], bool]) -> bool:
        """Hand every message (``str`` for text, ``bytes`` for binary) to ``handler``
        as it arrives, in picows' callback: a frame then reaches the call with no deque
        and no task wake-up. Messages received before this call go first, in order.

        Ends when ``handler`` returns true (returns True; later messages wait for
        ``receive`` or the next ``dispatch``), or when the socket has ended (returns
        False; ``receive`` then gives the disconnect message). An exception from
        ``handler`` is raised here."""
        if self._handler is not None:
            raise RuntimeError("this socket is already dispatching")
        frames = self._frames
        while frames:
            message = frames.popleft()
            data = message.get("text")
            if handler(message["bytes"] if data is None else data):
                self._resume_after_queue()
                return True
        self._resume_after_queue()
        self._handler, self._handler_stopped, self._handler_error = handler, False, None
        try:
            while not self._handler_stopped:
                if self._disconnected:
                    return False
                self._waiter = self._loop.create_future()  # type: ignore[union-attr]
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

    def _resume_after_queue(self) -> None:
        if self._reading_paused and len(self._frames) <= RESUME_READING_AT:
            self._reading_paused = False
            self._resume_reading()

    def hold_reading(self, hold: bool) -> None:
        """Stop reading the socket while the call is behind with the frames already
        handed to it (``dispatch``), and read again once it has caught up: the peer
        then waits in TCP, as when the deque is full."""
        if hold == self._held:
            return
        self._held = hold
        if hold:
            if not self._reading_paused and not self._disconnected:
                self._ws.underlying_transport.pause_reading()
        else:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if not self._reading_paused and not self._held and not self._disconnected:
            self._ws.underlying_transport.resume_reading()

    async def receive_text(self) -> str:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message["code"], message.get("reason"))
        return message["text"]

    async def receive_bytes(self) -> bytes:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message["code"], message.get("reason"))
        return message["bytes"]

    async def _writable(self) -> None:
        """Wait while the transport is over its high-water mark; raise as Starlette
        does once either side has closed."""
        if self._drained is not None:
            await asyncio.shield(self._drained)
        if self._close_sent:
            raise WebSocketDisconnected('Cannot call "send" once a close message has been sent.')
        if self._disconnected:
            raise WebSocketDisconnect(code=_ABNORMAL)

    async def send_text(self, data: str) -> None:
        await self._writable()
        self._ws.send(_TEXT, data)

    async def send_texts(self, first: str, second: str) -> None:
        """Two text messages as two frames in one write (one system call instead of
        two): an agent's audio chunk and its mark. Waits and raises as ``send_text``."""
        await self._writable()
        ws = self._ws
        if ws.is_close_frame_sent or ws.is_disconnected:  # as picows' own send
            return
        a, b = first.encode(), second.encode()
        ws.underlying_transport.write(_text_header(len(a)) + a + _text_header(len(b)) + b)

    async def send_bytes(self, data: bytes) -> None:
        await self._writable()
        self._ws.send(_BINARY, data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Send our close frame; the connection ends when the peer answers it (or after
        ``CLOSE_TIMEOUT_SECONDS``). Raises as Starlette does when already closed."""
        if self._close_sent:
            raise WebSocketDisconnected('Cannot call "send" once a close message has been sent.')
        self._close_sent = True
        if self._disconnected:
            raise WebSocketDisconnect(code=_ABNORMAL)
        self._ws.send_close(picows.WSCloseCode(code), (reason or "").encode())
        self._close_timer = asyncio.get_running_loop().call_later(
            CLOSE_TIMEOUT_SECONDS, self._ws.disconnect)

    # ------------------------------------------------------------ the listener's side

    @property
    def open(self) -> bool:
        return not self._disconnected

    def end(self, code: int = 1001, reason: str = "server shutting down", *,
            graceful: bool = True) -> None:
        """Close now: a close frame unless one was sent, then disconnect."""
        if self._ws is None or self._disconnected:
            return
        if not self._ws.is_close_frame_sent:
            self._close_sent = True
            self._ws.send_close(picows.WSCloseCode(code), reason.encode())
        self._ws.disconnect(graceful)


class MediaListener:
    """The media-stream port: a picows server whose every stream on ``MEDIA_PATH`` runs
    ``serve(socket, url)``, ``url`` being the stream's URL as Twilio was told it."""

    def __init__(self, host: str, port: int, *,
                 stream_url: Callable[[str, int], str] | None = None,
                 hosts: HostPolicy | None = None, paths: tuple[str, ...] = (MEDIA_PATH,),
                 inherited_fd: int | None = None) -> None:
        self.host, self._port = host, port
        self._stream_url = stream_url or (lambda host_header, port: f"wss://{host_header}{MEDIA_PATH}")
        self._hosts = hosts
        self._paths = paths
        self._inherited_fd = inherited_fd
        self._server: asyncio.Server | None = None
        # The listening socket; the server accepts on a duplicate, so that accepting can
        # stop (``set_accepting``) while the socket, shared with sibling workers, stays.
        self._base: socket.socket | None = None
        self._want_accepting = True
        self._switching = asyncio.Lock()
        self._serve: Serve | None = None
        self.sockets: set[MediaSocket] = set()
        self.refused = 0  # upgrades answered with an HTTP error

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaListener | None:
        """The listener ``MEDIA_LISTEN`` asks for, or ``None`` when it is empty."""
        if not settings.media_listen.strip():
            return None
        host, port = parse_listen(settings.media_listen)
        if settings.insecure_skip_twilio_signature and host not in ("127.0.0.1", "::1", "localhost"):
            raise PlatformError(
                f"INSECURE_SKIP_TWILIO_SIGNATURE is set and MEDIA_LISTEN would listen on "
                f"{host!r}: unsigned media streams are only allowed on a loopback host")
        public = settings.media_public_url
        # The names the main port answers to (its webhook's Host names this listener in
        # the TwiML), and MEDIA_PUBLIC_URL's.
        extra = [public] if public else []
        if settings.host.strip() not in ("", "0.0.0.0", "::", "*"):
            extra.append(_url_host(settings.host.strip()))
        hosts = HostPolicy.build(public_url=settings.public_url,
                                 allowed_hosts=",".join([settings.allowed_hosts, *extra]),
                                 bind_host=host)
        paths = (MEDIA_PATH,)
        if public:
            public_path = urlsplit(media_stream_url(settings, "", port)).path
            if public_path != MEDIA_PATH:  # a proxy that passes its prefix through
                paths = (MEDIA_PATH, public_path)
        fd = os.environ.get(MEDIA_FD_ENV)
        return cls(host, port, hosts=hosts, paths=paths,
                   inherited_fd=int(fd) if fd and fd.isdigit() else None,
                   stream_url=lambda host_header, bound: media_stream_url(settings, host_header,
                                                                          bound))

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one picked for port 0)."""
        if self._base is not None:
            return int(self._base.getsockname()[1])
        return self._port

    def stream_url(self, host_header: str = "") -> str:
        """The URL the TwiML names for a webhook that arrived with ``host_header``."""
        return self._stream_url(host_header, self.port)

    # ------------------------------------------------------------ running

    async def start(self, serve: Serve) -> None:
        self._serve = serve
        if self._inherited_fd is not None:
            base = socket.socket(fileno=self._inherited_fd)
        else:
            base = bind(self.host, self._port)
            base.set_inheritable(False)
        base.setblocking(False)
        self._base = base
        await self._accept()
        log.info("media streams on ws://%s:%d%s (picows); Twilio is told %s",
                 _url_host(self.host), self.port, MEDIA_PATH, self.stream_url(""))

    async def _accept(self) -> None:
        assert self._base is not None
        self._server = await picows.ws_create_server(
            self._factory, sock=self._base.dup(), websocket_handshake_timeout=10,
            enable_auto_pong=True, enable_auto_ping=True, auto_ping_idle_timeout=PING_SECONDS,
            auto_ping_reply_timeout=PING_SECONDS, max_frame_size=MAX_MESSAGE_BYTES,
            logger_name="media")

    @property
    def accepting(self) -> bool:
        return self._server is not None

    async def set_accepting(self, accepting: bool) -> None:
        """Stop taking new streams, or take them again; open streams go on either way.
        The socket stays bound meanwhile: under ``serve --workers`` a sibling accepting
        on it takes the next stream, and in one process new streams wait in its backlog.
        The latest call wins when calls overlap."""
        self._want_accepting = accepting
        async with self._switching:
            if self._base is None or self._want_accepting == self.accepting:
                return
            if self._want_accepting:
                await self._accept()
                return
            server, self._server = self._server, None
            assert server is not None
            server.close()  # closes the duplicate; existing connections are left alone

    def _factory(self, request: Any) -> Any:
        target = request.path.decode("latin-1")
        path, _, query = target.partition("?")
        headers = request.headers
        if self._hosts is not None:
            try:
                if len(headers.getall("host", ())) > 1:
                    raise BadHost("the request has more than one Host header")
                self._hosts.check_host(headers.get("host"))
            except BadHost as exc:
                log.warning("refused media upgrade on %s: %s", path, exc)
                return self._refuse(400)
        if path not in self._paths:
            log.warning("refused media upgrade: no stream at %s", path[:100])
            return self._refuse(403)
        media = MediaSocket(path, query, headers, on_open=self._opened)
        media.stream_url = self._stream_url(headers.get("host", ""), self.port)
        return media

    def _opened(self, media: MediaSocket) -> None:
        """The upgrade is done: the stream's handler runs as its own task."""
        media.task = asyncio.get_running_loop().create_task(self._run(media))
        self.sockets.add(media)

    def _refuse(self, status: int) -> Any:
        self.refused += 1
        return picows.WSUpgradeResponseWithListener(
            picows.WSUpgradeResponse.create_error_response(status), None)

    async def _run(self, media: MediaSocket) -> None:
        assert self._serve is not None
        try:
            await self._serve(media, media.stream_url)
        except (WebSocketDisconnect, WebSocketDisconnected) as exc:  # the peer left first
            log.debug("media stream ended under its handler (%r)", exc)
        except Exception:
            log.exception("media stream handler failed")
        finally:
            self.sockets.discard(media)
            if media.open and not media._close_sent:  # as uvicorn when a handler returns
                media.end(1000, "")

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """No new streams; those still open get ``grace`` seconds to end (by the time
        the lifespan stops the carriers their calls have ended), then are closed."""
        server, self._server = self._server, None
        base, self._base = self._base, None
        if base is None:
            return
        if server is not None:
            server.close()
        base.close()
        tasks = [m.task for m in self.sockets if m.task is not None and not m.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for media in list(self.sockets):
            if media.task is not None and not media.task.done():
                media.task.cancel()
            media.end(graceful=False)
        left = [m.task for m in self.sockets if m.task is not None and not m.task.done()]
        if left:
            await asyncio.wait(left, timeout=1.0)
        self.sockets.clear()
