"""A small full-duplex HTTP/2 client over asyncio + TLS, built on the ``h2`` state machine.

Bedrock's bidirectional streams need one thing common HTTP clients do not offer:
sending a request body while the response body is already arriving, on one stream,
for minutes. This client does only that — open a connection, open streams, send
DATA under flow control, read DATA as it comes — and nothing else (no pooling,
no redirects, no retries). Its server twin, ``Http2ServerConnection``, lets the
simulators speak the same protocol back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

log = logging.getLogger(__name__)

_READ_SIZE = 65536
# Generous receive windows: output audio arrives faster than real time.
_WINDOW = 4 * 1024 * 1024


class Http2Error(Exception):
    """The connection or a stream failed (refused, reset, closed, protocol error)."""


class Http2Stream:
    """One request/response exchange. Send with ``send``/``end``; read with ``receive``."""

    def __init__(self, connection: Http2Connection, stream_id: int) -> None:
        self._conn = connection
        self.stream_id = stream_id
        self._headers: asyncio.Future[tuple[int, dict[str, str]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._data: asyncio.Queue[bytes | Http2Error | None] = asyncio.Queue()
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._send_lock = asyncio.Lock()
        self.ended_local = False
        self.ended_remote = False

    async def response(self) -> tuple[int, dict[str, str]]:
        """Wait for the response headers: ``(status, headers)``."""
        return await asyncio.shield(self._headers)

    async def send(self, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` as DATA frames, waiting for flow-control window as needed."""
        async with self._send_lock:
            await self._conn._send_data(self, data, end)
            if end:
                self.ended_local = True

    async def end(self) -> None:
        """Half-close our side (END_STREAM) without more data."""
        await self.send(b"", end=True)

    async def receive(self) -> bytes:
        """The next piece of the response body; ``b""`` once the peer ended the stream.
        Raises ``Http2Error`` if the stream was reset or the connection lost."""
        item = await self._data.get()
        if item is None:
            self._data.put_nowait(None)  # later calls see the end too
            return b""
        if isinstance(item, Http2Error):
            self._data.put_nowait(item)
            raise item
        return item

    def reset(self) -> None:
        """Abandon the stream (RST_STREAM CANCEL)."""
        self._conn._reset(self)

    # -- fed by the connection's reader

    def _on_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        pairs = {k.decode(): v.decode() for k, v in headers}
        if not self._headers.done():
            status = int(pairs.pop(":status", "0"))
            self._headers.set_result((status, pairs))

    def _on_data(self, data: bytes) -> None:
        self._data.put_nowait(data)

    def _on_end(self) -> None:
        self.ended_remote = True
        self._data.put_nowait(None)

    def _fail(self, error: Http2Error) -> None:
        if not self._headers.done():
            self._headers.set_exception(error)
            self._headers.exception()  # mark retrieved: nobody may be waiting
        self._data.put_nowait(error)
        self._window_open.set()


class Http2Connection:
    """One TLS connection speaking HTTP/2 (ALPN ``h2``), with a reader task."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._streams: dict[int, Http2Stream] = {}
        self._closed = False
        self._reader_task: asyncio.Task[None] | None = None
        self._handlers: dict[type, Callable[[h2.events.Event], None]] = {
            h2.events.ResponseReceived: self._on_response,
            h2.events.DataReceived: self._on_data,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_window,
            h2.events.ConnectionTerminated: self._on_terminated,
            h2.events.TrailersReceived: self._on_trailers,
        }

    @classmethod
    async def open(
        cls, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None, timeout: float = 10.0,
    ) -> Http2Connection:
        """Connect, negotiate ``h2`` by ALPN and exchange the connection preface."""
        context = ssl_context or ssl.create_default_context()
        context.set_alpn_protocols(["h2"])
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=context, server_hostname=server_hostname or host
                ),
                timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise Http2Error(f"cannot connect to {host}:{port}: {exc}") from exc
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            writer.close()
            raise Http2Error(f"{host}:{port} did not negotiate HTTP/2")
        conn = cls(reader, writer)
        conn._start()
        return conn

    def _start(self) -> None:
        self._h2.initiate_connection()
        self._h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW})
        self._h2.increment_flow_control_window(_WINDOW)
        self._flush()
        self._reader_task = asyncio.create_task(self._read_loop(), name="http2-reader")

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(
        self, method: str, path: str, authority: str, headers: list[tuple[str, str]],
        *, end_stream: bool = False,
    ) -> Http2Stream:
        """Open a stream by sending request headers; the body follows via ``send``."""
        if self._closed:
            raise Http2Error("connection is closed")
        stream_id = self._h2.get_next_available_stream_id()
        stream = Http2Stream(self, stream_id)
        self._streams[stream_id] = stream
        pseudo = [(":method", method), (":scheme", "https"), (":authority", authority),
                  (":path", path)]
        self._h2.send_headers(stream_id, pseudo + headers, end_stream=end_stream)
        self._flush()
        return stream

    async def close(self) -> None:
        """Say GOAWAY and close the socket; every open stream fails."""
        if self._closed:
            return
        try:
            self._h2.close_connection()
            self._flush()
        except h2.exceptions.ProtocolError:
            pass
        self._shutdown(Http2Error("connection closed"))
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            try:
                await self._reader_task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    # -- sending

    async def _send_data(self, stream: Http2Stream, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while True:
            if self._closed:
                raise Http2Error("connection is closed")
            try:
                window = self._h2.local_flow_control_window(stream.stream_id)
            except h2.exceptions.StreamClosedError as exc:
                raise Http2Error(f"stream {stream.stream_id} is closed") from exc
            size = min(window, self._h2.max_outbound_frame_size, len(view))
            if size <= 0 and len(view) > 0:
                stream._window_open.clear()
                await stream._window_open.wait()
                continue
            chunk, view = view[:size], view[size:]
            last = end and not view
            try:
                self._h2.send_data(stream.stream_id, bytes(chunk), end_stream=last)
            except h2.exceptions.ProtocolError as exc:
                raise Http2Error(f"cannot send on stream {stream.stream_id}: {exc}") from exc
            self._flush()
            if not view:
                break
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as exc:
            self._shutdown(Http2Error(f"connection lost: {exc}"))
            raise Http2Error(f"connection lost: {exc}") from exc

    def _reset(self, stream: Http2Stream) -> None:
        if self._closed:
            return
        try:
            self._h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()
        except h2.exceptions.ProtocolError:
            pass
        self._streams.pop(stream.stream_id, None)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    # -- receiving

    async def _read_loop(self) -> None:
        error = Http2Error("connection closed by peer")
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    error = Http2Error(f"HTTP/2 protocol error: {exc}")
                    break
                for event in events:
                    handler = self._handlers.get(type(event))
                    if handler is not None:
                        handler(event)
                self._flush()
        except (OSError, ssl.SSLError) as exc:
            error = Http2Error(f"connection lost: {exc}")
        self._shutdown(error)

    def _shutdown(self, error: Http2Error) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in self._streams.values():
            if not stream.ended_remote:
                stream._fail(error)
        self._streams.clear()
        self._writer.close()

    def _on_response(self, event: h2.events.Event) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._on_headers(event.headers)

    def _on_trailers(self, event: h2.events.Event) -> None:
        log.debug("trailers on stream %s: %s", event.stream_id, event.headers)

    def _on_data(self, event: h2.events.Event) -> None:
        self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self._streams.get(event.stream_id)
        if stream is not None and event.data:
            stream._on_data(event.data)

    def _on_stream_ended(self, event: h2.events.Event) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._on_end()
            if stream.ended_local:
                self._streams.pop(event.stream_id, None)

    def _on_stream_reset(self, event: h2.events.Event) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if stream is not None:
            stream._fail(Http2Error(f"stream reset by peer (code {event.error_code})"))

    def _on_window(self, event: h2.events.Event) -> None:
        for stream in self._streams.values():
            stream._window_open.set()

    def _on_terminated(self, event: h2.events.Event) -> None:
        self._shutdown(Http2Error(f"peer sent GOAWAY (code {event.error_code})"))


class Http2ServerConnection:
    """The server end of one HTTP/2 connection, for the protocol simulators.

    It owns the h2 state machine, the read loop and flow-controlled sending; what a
    request means is left to three callbacks: ``on_request(stream_id, headers)``,
    ``on_data(stream_id, data)`` and ``on_end(stream_id)`` (peer ended or reset).
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
        on_request: Callable[[int, dict[str, str]], None],
        on_data: Callable[[int, bytes], None], on_end: Callable[[int], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self._window_open = asyncio.Event()
        self._on_request, self._on_data_cb, self._on_end = on_request, on_data, on_end
        self._handlers: dict[type, Callable[[Any], None]] = {
            h2.events.RequestReceived: lambda e: self._on_request(e.stream_id, dict(e.headers)),
            h2.events.DataReceived: self._on_data,
            h2.events.StreamEnded: lambda e: self._on_end(e.stream_id),
            h2.events.StreamReset: lambda e: self._on_end(e.stream_id),
            h2.events.WindowUpdated: lambda e: self._window_open.set(),
            h2.events.RemoteSettingsChanged: lambda e: self._window_open.set(),
        }

    async def run(self) -> None:
        """Serve until the peer goes away or breaks the protocol."""
        self._h2.initiate_connection()
        self._h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW})
        self._h2.increment_flow_control_window(_WINDOW)
        self._flush()
        try:
            while data := await self._reader.read(_READ_SIZE):
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.warning("http2 server: protocol error: %s", exc)
                    break
                for event in events:
                    handler = self._handlers.get(type(event))
                    if handler is not None:
                        handler(event)
                self._flush()
        except (OSError, ssl.SSLError):
            pass
        self._window_open.set()

    def respond(self, stream_id: int, status: int, headers: list[tuple[str, str]],
                body: bytes | None = None) -> None:
        """Send response headers; with ``body`` the response is complete."""
        self._h2.send_headers(stream_id, [(":status", str(status)), *headers],
                              end_stream=body == b"")
        if body:
            self._h2.send_data(stream_id, body, end_stream=True)
        self._flush()

    async def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """DATA under flow control; quietly dropped once the stream or connection is gone."""
        view = memoryview(data)
        while not self._writer.is_closing():
            try:
                window = self._h2.local_flow_control_window(stream_id)
                size = min(window, self._h2.max_outbound_frame_size, len(view))
                if size <= 0 and view:
                    self._window_open.clear()
                    await self._window_open.wait()
                    continue
                self._h2.send_data(stream_id, bytes(view[:size]),
                                   end_stream=end and size == len(view))
            except (h2.exceptions.ProtocolError, KeyError):
                return
            view = view[size:]
            self._flush()
            if not view:
                break
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        self._window_open.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self._on_data_cb(event.stream_id, event.data)
