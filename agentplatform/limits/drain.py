"""Graceful shutdown: on SIGTERM, stop taking calls, let live ones finish, then exit.

An orchestrator (systemd, Kubernetes, a deploy script) sends SIGTERM and waits.
Left to itself the HTTP server would close its listening socket at once — a call
ringing at that moment would get a connection error and the carrier's generic
failure message — and cut every live call. Instead:

1. ``draining`` goes up. The server keeps listening; every new call is answered
   with a short spoken message (``draining_message``) and recorded as ``draining``.
2. Live calls run on until they end by themselves, or until ``drain_timeout_seconds``.
3. Calls still live then are ended with the shutdown apology; each record is closed
   with ``server_shutdown``. The call records are flushed.
4. The server's own SIGTERM handling takes over and the process exits.

A second SIGTERM during the drain skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class Drain:
    def __init__(self, message: str, timeout: float) -> None:
        self.message = message
        self.timeout = timeout
        self.draining = False
        self.started_at: float | None = None
        self._hurry = asyncio.Event()
        self._previous: Any = None
        self._installed = False

    def begin(self) -> bool:
        """Refuse new calls from now on; False if already draining."""
        if self.draining:
            self._hurry.set()
            return False
        self.draining = True
        self.started_at = time.monotonic()
        log.warning("draining: refusing new calls; waiting up to %.0f s for live calls",
                    self.timeout)
        return True

    async def wait_for_calls(self, live: Callable[[], int]) -> int:
        """Wait until ``live()`` is 0, the timeout passes, or a second signal comes.
        Returns how many calls were still live."""
        deadline = time.monotonic() + self.timeout
        while live() and time.monotonic() < deadline and not self._hurry.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(),
                                       min(0.1, max(deadline - time.monotonic(), 0.0)))
        return live()

    # ------------------------------------------------------------ SIGTERM

    def install(self, loop: asyncio.AbstractEventLoop,
                drain_then_exit: Callable[[], Awaitable[None]]) -> bool:
        """Take over SIGTERM for this process (main thread only): the first one
        starts ``drain_then_exit``; the handler it replaced runs once that is done."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            if self.begin():
                loop.call_soon_threadsafe(lambda: loop.create_task(self._run(drain_then_exit)))

        signal.signal(signal.SIGTERM, on_sigterm)
        self._installed = True
        return True

    async def _run(self, drain_then_exit: Callable[[], Awaitable[None]]) -> None:
        try:
            await drain_then_exit()
        except Exception:
            log.exception("drain failed; shutting down now")
        finally:
            self.hand_back(exit_now=True)

    def hand_back(self, *, exit_now: bool = False) -> None:
        """Restore the SIGTERM handler we replaced; with ``exit_now``, run it as if
        SIGTERM had just arrived (the server then shuts down as it always does)."""
        if not self._installed:
            return
        self._installed = False
        previous = self._previous
        signal.signal(signal.SIGTERM, previous)
        if not exit_now:
            return
        if callable(previous):
            previous(signal.SIGTERM, None)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGTERM)
