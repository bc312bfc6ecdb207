"""The model socket client against a real WebSocket server (websockets) over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response

from agentplatform.realtime.ws_client import connect


@asynccontextmanager
async def server(handler: Callable[[ServerConnection], Awaitable[None]],
                 **options: Any) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **options) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/realtime"


async def test_a_fragmented_message_arrives_whole() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["{\"type\":", "\"a.b\",", "\"x\":1}"])  # three frames, one message
        await ws.wait_closed()

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        assert await socket.recv() == '{"type":"a.b","x":1}'
        await socket.close()


async def test_headers_reach_the_server_and_messages_flow_both_ways() -> None:
    seen: list[str | None] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws.request.headers.get("Authorization"))
        async for message in ws:
            await ws.send(f"echo {message}")

    async with server(handler) as url:
        socket = await connect(url, additional_headers={"Authorization": "Bearer k"},
                               max_size=1 << 20)
        await socket.send("one")
        socket.send_now("two")
        assert [await socket.recv(), await socket.recv()] == ["echo one", "echo two"]
        await socket.close()
    assert seen == ["Bearer k"]


async def test_a_refused_upgrade_raises_invalid_status_with_the_http_status() -> None:
    def refuse(connection: ServerConnection, request: Any) -> Response:
        return connection.respond(401, "no key\n")

    async with server(lambda ws: ws.wait_closed(), process_request=refuse) as url:
        with pytest.raises(InvalidStatus) as caught:
            await connect(url, additional_headers={}, max_size=1 << 20)
    assert caught.value.response.status_code == 401


async def test_a_normal_close_ends_iteration_and_its_code_is_kept() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("last")
        await ws.close(1000)

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        assert [m async for m in socket] == ["last"]
    assert socket.close_code == 1000
    assert not socket.writable
    with pytest.raises(ConnectionClosed):
        await socket.send("after the end")


async def test_a_dropped_connection_raises_from_iteration() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("first")
        await asyncio.sleep(0.05)
        ws.transport.abort()  # no close frame

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        received = []
        with pytest.raises(ConnectionClosed) as caught:
            async for message in socket:
                received.append(message)
    assert received == ["first"]
    assert caught.value.rcvd is None
    assert socket.close_code == 1006
