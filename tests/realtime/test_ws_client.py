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


async def test_dispatch_hands_every_message_over_in_order_including_those_already_received() -> None:
    async def handler(ws: ServerConnection) -> None:
        for i in range(5):
            await ws.send(f"m{i}")
        await asyncio.sleep(0.05)  # the first ones arrive before dispatching starts
        for i in range(5, 8):
            await ws.send(f"m{i}")
        await ws.close(1000)

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        await asyncio.sleep(0.03)
        got: list[str | bytes] = []
        stopped = await socket.dispatch(lambda message: got.append(message) or False)
    assert got == [f"m{i}" for i in range(8)]
    assert stopped is False  # a normal close ends it quietly
    assert socket.close_code == 1000


async def test_dispatch_runs_in_the_socket_callback_without_a_task_per_message() -> None:
    async def handler(ws: ServerConnection) -> None:
        await asyncio.sleep(0.05)  # dispatching has started by then
        await ws.send(["frag", "mented"])
        await ws.send("whole")
        await ws.close(1000)

    tasks: list[asyncio.Task[Any] | None] = []

    def record(message: str | bytes) -> bool:
        tasks.append(asyncio.current_task())
        return False

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        await socket.dispatch(record)
    assert tasks == [None, None]  # called from the transport's callback, not a task


async def test_dispatch_stops_when_the_handler_says_so_and_later_messages_wait_for_recv() -> None:
    release = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("a")
        await ws.send("stop")
        await release.wait()
        await ws.send("after")
        await ws.wait_closed()

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        got: list[str | bytes] = []
        stopped = await socket.dispatch(lambda message: got.append(message) or message == "stop")
        release.set()
        assert stopped is True
        assert got == ["a", "stop"]
        assert await socket.recv() == "after"
        await socket.close()


async def test_dispatch_raises_on_a_dropped_connection_and_on_a_failing_handler() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("first")
        await asyncio.sleep(0.05)
        ws.transport.abort()  # no close frame

    async with server(handler) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        with pytest.raises(ConnectionClosed):
            await socket.dispatch(lambda message: False)
    assert socket.close_code == 1006

    def failing(message: str | bytes) -> bool:
        raise ValueError(f"cannot handle {message}")

    async def talker(ws: ServerConnection) -> None:
        await asyncio.sleep(0.02)
        await ws.send("boom")
        await ws.wait_closed()

    async with server(talker) as url:
        socket = await connect(url, additional_headers={}, max_size=1 << 20)
        with pytest.raises(ValueError, match="cannot handle boom"):
            await socket.dispatch(failing)
        await socket.close()
