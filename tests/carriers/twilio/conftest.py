"""Shared fixtures: a real uvicorn server on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import uvicorn
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def _serve(app: ASGIApp) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def serve() -> Callable[[ASGIApp], AbstractAsyncContextManager[str]]:
    """``async with serve(app) as base_url:`` runs ``app`` for the test's duration."""
    return _serve
