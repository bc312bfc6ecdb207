"""The HTTP/2 client against a tiny echo server on loopback TLS.

The server keeps h2's default 64 KiB receive window and only widens it as the
test reads echoes back, so a big body proves the client waits for WINDOW_UPDATE
instead of overrunning the peer.
"""

import asyncio
import contextlib

import h2.config
import h2.connection
import h2.events
import pytest

from agentplatform.realtime.aws_http2 import Http2Connection, Http2Error, Http2ServerConnection
from agentplatform.testing.tls import make_tls_pair


class EchoServer:
    """Answers each POST with 200 and echoes the request body back as it arrives."""

    def __init__(self, alpn: list[str] | None = None, status: int = 200) -> None:
        self.tls = make_tls_pair()
        self.tls.server.set_alpn_protocols(alpn if alpn is not None else ["h2"])
        self.status = status
        self.paths: list[str] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> "EchoServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls.server)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        self.writers.append(writer)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                    header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.paths.append(dict(event.headers)[":path"])
                        conn.send_headers(event.stream_id, [(":status", str(self.status))],
                                          end_stream=self.status != 200)
                    elif isinstance(event, h2.events.DataReceived):
                        # Echo first, then credit the window: the echo is this
                        # server's proof that it consumed the bytes.
                        conn.send_data(event.stream_id, event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        conn.end_stream(event.stream_id)
                writer.write(conn.data_to_send())


async def test_request_streams_body_and_reads_echo_full_duplex():
    async with EchoServer() as server:
        conn = await Http2Connection.open("127.0.0.1", server.port, ssl_context=server.tls.client)
        stream = await conn.request("POST", "/echo", f"127.0.0.1:{server.port}", [])
        assert await stream.response() == (200, {})
        # Full duplex: each piece comes back before the request body is finished.
        for piece in (b"one", b"two", b"three"):
            await stream.send(piece)
            assert await stream.receive() == piece
        await stream.end()
        assert await stream.receive() == b""
        assert server.paths == ["/echo"]
        await conn.close()


async def test_body_larger_than_the_peer_window_waits_for_window_updates():
    body = bytes(range(256)) * 1024  # 256 KiB, four times the server's window
    async with EchoServer() as server:
        conn = await Http2Connection.open("127.0.0.1", server.port, ssl_context=server.tls.client)
        stream = await conn.request("POST", "/big", f"127.0.0.1:{server.port}", [])
        sender = asyncio.create_task(stream.send(body, end=True))
        received = bytearray()
        while chunk := await stream.receive():
            received += chunk
        await sender
        assert bytes(received) == body
        await conn.close()


async def test_non_200_status_is_reported_with_its_headers():
    async with EchoServer(status=403) as server:
        conn = await Http2Connection.open("127.0.0.1", server.port, ssl_context=server.tls.client)
        stream = await conn.request("POST", "/denied", f"127.0.0.1:{server.port}", [])
        status, _ = await stream.response()
        assert status == 403
        assert await stream.receive() == b""
        await conn.close()


async def test_server_without_h2_alpn_is_refused():
    async with EchoServer(alpn=["http/1.1"]) as server:
        with pytest.raises(Http2Error, match="HTTP/2"):
            await Http2Connection.open("127.0.0.1", server.port, ssl_context=server.tls.client)


async def test_untrusted_certificate_is_refused():
    async with EchoServer() as server:
        stranger = make_tls_pair()
        with pytest.raises(Http2Error, match="cannot connect"):
            await Http2Connection.open("127.0.0.1", server.port, ssl_context=stranger.client)


async def test_peer_closing_the_connection_fails_open_streams():
    async with EchoServer() as server:
        conn = await Http2Connection.open("127.0.0.1", server.port, ssl_context=server.tls.client)
        stream = await conn.request("POST", "/x", f"127.0.0.1:{server.port}", [])
        await stream.response()
        for writer in server.writers:
            writer.close()
        with pytest.raises(Http2Error):
            await stream.receive()
        assert conn.closed
        with pytest.raises(Http2Error):
            await conn.request("POST", "/y", f"127.0.0.1:{server.port}", [])
        await conn.close()


async def test_server_connection_sends_more_than_the_client_window():
    """The server twin honours the client's flow control on a body bigger than the
    client's whole 4 MiB window, and hands request data and end to its callbacks."""
    tls = make_tls_pair()
    tls.server.set_alpn_protocols(["h2"])
    body = b"\x5a" * (5 * 1024 * 1024)
    got: list[bytes] = []
    ended = asyncio.Event()
    sending: list[asyncio.Task] = []

    async def serve(reader, writer):
        conn = None

        def on_request(stream_id, headers):
            conn.respond(stream_id, 200, [("x-path", headers[":path"])])
            sending.append(asyncio.get_running_loop().create_task(
                conn.send(stream_id, body, end=True)))

        def on_end(stream_id):
            ended.set()

        conn = Http2ServerConnection(reader, writer, on_request=on_request,
                                     on_data=lambda sid, data: got.append(data), on_end=on_end)
        await conn.run()
        await conn.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls.server)
    port = server.sockets[0].getsockname()[1]
    client = await Http2Connection.open("127.0.0.1", port, ssl_context=tls.client)
    stream = await client.request("POST", "/big", f"127.0.0.1:{port}", [])
    await stream.send(b"ping", end=True)
    assert await stream.response() == (200, {"x-path": "/big"})
    received = bytearray()
    while chunk := await stream.receive():
        received += chunk
    assert len(received) == len(body)
    await ended.wait()
    assert b"".join(got) == b"ping"
    await client.close()
    server.close()
    await server.wait_closed()
