"""A whole platform on loopback: the server in-process on an ephemeral port, wired to
simulated providers. Tests, ``agentplatform call --simulated-model`` and the benchmark
use it; users can use it in their own CI to test an agent before a phone ever rings.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from agentplatform.app import create_app
from agentplatform.config import Settings
from agentplatform.testing.loopback import LoopbackServer
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN


class LocalServer:
    """``create_app(settings)`` served by uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: FastAPI = create_app(settings)
        self._loopback = LoopbackServer(self.app, lifespan="on", ws_max_size=1 << 20)

    @property
    def port(self) -> int:
        return self._loopback.port

    @property
    def base_url(self) -> str:
        return self._loopback.base_url

    async def start(self) -> None:
        await self._loopback.start()

    async def stop(self) -> None:
        await self._loopback.stop()

    @property
    def platform(self):  # the app's shared state (store, writer, live calls)
        return self.app.state.platform

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def simulated_settings(*, agents_dir: Path, database_url: str, openai_url: str = "",
                       **overrides: object) -> Settings:
    """Settings that point the platform at simulators and keep it off the network."""
    values: dict[str, object] = dict(
        agents_dir=agents_dir, database_url=database_url, public_url="",
        twilio_account_sid="", twilio_auth_token=SIMULATED_AUTH_TOKEN,
        stream_token_secret="test-secret",
        openai_api_key="test-key", openai_realtime_url=openai_url,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def local_server(settings: Settings) -> AsyncIterator[LocalServer]:
    server = LocalServer(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
