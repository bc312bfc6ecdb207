"""A real HTTP server on a loopback ephemeral port for webhook tool tests.

Endpoints: ``/echo`` reports what arrived (method, query, headers, JSON body);
``/status/{code}`` answers with that status; ``/slow`` answers only when the
test ends; ``/redirect`` points at ``/echo``; ``/big`` sends 100 KB of text;
``/empty`` answers 204; ``/text`` answers plain text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclass
class EchoServer:
    port: int
    requests: list[str] = field(default_factory=list)  # paths, in arrival order
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _app(server: EchoServer) -> Starlette:
    async def echo(request: Request) -> Response:
        server.requests.append(request.url.path)
        raw = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "query": [[k, v] for k, v in request.query_params.multi_items()],
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": json.loads(raw) if raw else None,
            }
        )

    async def status(request: Request) -> Response:
        server.requests.append(request.url.path)
        code = int(request.path_params["code"])
        return PlainTextResponse("the backend broke", status_code=code)

    async def slow(request: Request) -> Response:
        server.requests.append(request.url.path)
        await server.release.wait()
        return PlainTextResponse("too late")

    async def redirect(request: Request) -> Response:
        server.requests.append(request.url.path)
        return RedirectResponse("/echo", status_code=302)

    async def big(request: Request) -> Response:
        server.requests.append(request.url.path)
        return PlainTextResponse("x" * 100_000)

    async def empty(request: Request) -> Response:
        server.requests.append(request.url.path)
        return Response(status_code=204)

    async def text(request: Request) -> Response:
        server.requests.append(request.url.path)
        return PlainTextResponse("the table is booked for 7 pm")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=METHODS),
            Route("/status/{code:int}", status, methods=METHODS),
            Route("/slow", slow, methods=METHODS),
            Route("/redirect", redirect, methods=METHODS),
            Route("/big", big, methods=METHODS),
            Route("/empty", empty, methods=METHODS),
            Route("/text", text, methods=METHODS),
        ]
    )


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    state = EchoServer(port=0)
    config = uvicorn.Config(
        _app(state), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    state.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.release.set()
        server.should_exit = True
        await task


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client
