"""An ASGI app served by uvicorn on 127.0.0.1 at a free port, inside the running loop.

Tests and simulators need real sockets (a real HTTP or WebSocket peer) without a
fixed port; this is the one way they start such a server.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn


class LoopbackServer:
    def __init__(self, app: Any, *, lifespan: str = "off", **config: Any) -> None:
        self.app = app
        self._config = dict(lifespan=lifespan, **config)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                **self._config)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
