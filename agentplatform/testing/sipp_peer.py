"""Runs sipp (Debian's ``sip-tester``) as a real SIP peer for tests.

sipp is an independent SIP implementation: when it accepts our messages and its
scenario completes, a second reading of RFC 3261 agrees with ours. A run ends with
sipp's own verdict (exit 0: every call followed the scenario; 1: some failed) and
its error log, which names the message it did not expect.

    async with SippPeer(["-sn", "uas", "-rtp_echo"], port=5062) as uas:
        ...                      # call 127.0.0.1:5062
    assert uas.result.ok, uas.result.errors
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

SIPP = "sipp"


@dataclass(slots=True)
class SippResult:
    returncode: int
    output: str
    errors: str  # sipp's error log (-trace_err): the unexpected messages, verbatim

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def free_udp_port(host: str = "127.0.0.1", *, even: bool = False, span: int = 1) -> int:
    """A UDP port nobody holds now (and the ``span - 1`` after it), even if asked."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if even and port % 2:
            continue
        if all(udp_port_free(host, p) for p in range(port, port + span)):
            return port
    raise RuntimeError("no free UDP port")


def udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class SippPeer:
    """One sipp process on ``host:port`` (media on ``media_port``), run to its end."""

    def __init__(self, args: list[str], *, port: int | None = None, media_port: int | None = None,
                 host: str = "127.0.0.1", calls: int = 1, timeout: float = 12.0,
                 remote: str | None = None, files: dict[str, bytes] | None = None) -> None:
        """``remote`` ("host:port") makes it a UAC dialing there; ``files`` are written to
        its working directory (what ``rtp_stream`` plays is read from there)."""
        if shutil.which(SIPP) is None:
            raise FileNotFoundError("sipp is not installed (Debian package sip-tester)")
        self.host, self.timeout = host, timeout
        self.port = port or free_udp_port(host)
        self.media_port = media_port or free_udp_port(host, even=True, span=4)
        self._dir = tempfile.TemporaryDirectory(prefix="sipp-")
        self._error_file = Path(self._dir.name) / "errors.log"
        self.command = [SIPP, *args, "-i", host, "-p", str(self.port), "-mi", host,
                        "-mp", str(self.media_port), "-m", str(calls), "-nostdin",
                        "-timeout", f"{int(timeout)}s", "-timeout_error",
                        "-trace_err", "-error_file", str(self._error_file)] + ([remote] if remote else [])
        self.remote = remote
        for name, data in (files or {}).items():
            (Path(self._dir.name) / name).write_bytes(data)
        self.result: SippResult | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, *, listening: bool = True) -> None:
        """Start sipp; a UAS is waited for until it holds its port."""
        self._process = await asyncio.create_subprocess_exec(
            *self.command, cwd=self._dir.name, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        if listening:
            async with asyncio.timeout(5):
                while udp_port_free(self.host, self.port):
                    if self._process.returncode is not None:
                        raise RuntimeError(f"sipp exited at once: {await self._output()}")
                    await asyncio.sleep(0.02)

    async def _output(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        return (await self._process.stdout.read()).decode(errors="replace")

    async def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to finish its calls; kill it past ``timeout``."""
        assert self._process is not None
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.timeout + 3):
                output = await self._output()
                await self._process.wait()
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
            output = "(killed: sipp outlived its timeout)"
        errors = self._error_file.read_text(errors="replace") if self._error_file.exists() else ""
        self.result = SippResult(self._process.returncode or 0, output, errors)
        return self.result

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        self._dir.cleanup()

    async def __aenter__(self) -> SippPeer:
        await self.start(listening=self.remote is None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.result is None and exc[0] is None:
            await self.wait()
        await self.stop()


__all__ = ["SippPeer", "SippResult", "free_udp_port", "udp_port_free"]
