"""Real server processes (``agentplatform serve``) for tests that need more than one,
or need to signal one: they share a database and an agents folder like a fleet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, env: dict[str, str], workdir: Path, name: str, *,
                 public_url_is_own: bool = False) -> None:
        """``public_url_is_own``: ``PUBLIC_URL`` is this server's own address, for a
        simulator that calls it back (Twilio's REST simulator dialing a campaign)."""
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        if public_url_is_own:
            env = {**env, "PUBLIC_URL": self.base_url}
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentplatform.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port)],
            # Shedding is tested in tests/limits; here a loaded test machine must not
            # turn these calls away as busy.
            env={**os.environ, "LOG_LEVEL": "info", "OVERLOAD_SHEDDING": "false", **env},
            cwd=workdir,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.base_url + "/healthz")).status_code == 200:
                        return
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log()}")
                await asyncio.sleep(0.05)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            while self.proc.poll() is None:
                await asyncio.sleep(0.05)
        return self.proc.returncode

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
        self._log.close()


@contextlib.asynccontextmanager
async def servers(count: int, env: dict[str, str], workdir: Path):
    procs = [ServerProcess(env, workdir, f"server{i}") for i in range(count)]
    try:
        await asyncio.gather(*(p.wait_ready() for p in procs))
        yield procs
    finally:
        for p in procs:
            await p.stop()


def fleet_env(*, agents_dir: Path, database_url: str, openai_url: str, **extra: str) -> dict[str, str]:
    """Settings every process of the fleet shares (one database, one token secret)."""
    return {
        "AGENTS_DIR": str(agents_dir), "DATABASE_URL": database_url,
        "OPENAI_API_KEY": "test-key", "OPENAI_REALTIME_URL": openai_url,
        "STREAM_TOKEN_SECRET": "fleet-secret", "TWILIO_AUTH_TOKEN": SIMULATED_AUTH_TOKEN, "TWILIO_ACCOUNT_SID": "",
        "PUBLIC_URL": "", "REDIS_URL": "", **extra,
    }
