"""Agent-file work (YAML parse, validation, form edits, dumps) in a worker process.

The event loop also carries every live call's audio, so nothing proportional to an
agent file may run on it. A worker *thread* is not enough: parsing in pure Python
holds the GIL, and a loop that must win the GIL back for each socket operation
falls tens of milliseconds behind (measured: p99 frame lag above 100 ms while one
thread parsed a 2,000-value file). A separate process has its own GIL.

One process serves all agent-file work of this server (jobs queue, so an admin
flood cannot take more than one core), is started on first use, and is killed and
replaced when a job outlives its time limit, so a runaway job stops using the CPU.
The functions it runs must be module-level and their arguments picklable. The
worker is a fresh interpreter (``spawn``): a script that starts the server must
guard its top level with ``if __name__ == "__main__":``, as every multiprocessing
program must (``agentplatform serve`` and ``python -m`` entry points do).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.pool import Pool
from typing import Any, TypeVar

from agentplatform.agents.issues import WHOLE_FILE
from agentplatform.errors import AgentError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Longest any one job (queue time included) may take before it is abandoned.
TIME_LIMIT_SECONDS = 15.0


class AgentWorkTimeout(AgentError):
    """A job on an agent file did not finish within its time limit."""

    def __init__(self, file: str, seconds: float) -> None:
        super().__init__(file, WHOLE_FILE, f"checking this file took longer than {seconds:g} s "
                         "and was stopped; try again, or make the file smaller")


# How much lower than the server the worker runs (Unix nice): when cores are short,
# the live calls' event loop gets the CPU first and agent-file work waits.
NICENESS = 10

_lock = threading.Lock()
_pool: Pool | None = None


def _lower_priority() -> None:
    """Runs first in the worker process."""
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):  # no nice() on this platform: run as we are
        pass


def _get_pool() -> Pool:
    global _pool
    with _lock:
        if _pool is None:
            # spawn: a clean interpreter (forking a process that has threads can deadlock).
            _pool = multiprocessing.get_context("spawn").Pool(processes=1,
                                                               initializer=_lower_priority)
        return _pool


def _discard(pool: Pool) -> None:
    """Kill ``pool``'s process (a stuck job with it); the next job starts a fresh one."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.terminate()


def shutdown() -> None:
    """Stop the worker process, if one was started (tests, interpreter exit)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.terminate()
        pool.join()


atexit.register(shutdown)


async def run(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the worker process. After ``TIME_LIMIT_SECONDS`` it
    raises ``AgentWorkTimeout`` naming the job's ``file`` (or ``path``) argument; the
    job's own exceptions are raised here as they were."""
    file = str(kwargs.get("file") or kwargs.get("path") or "agent file")
    timeout = TIME_LIMIT_SECONDS
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not done.done():
            setter(value)

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        # Runs on the pool's result thread, which must survive a loop that has closed.
        try:
            loop.call_soon_threadsafe(settle, setter, value)
        except RuntimeError:
            pass

    pool = await asyncio.to_thread(_get_pool)  # the first start takes a moment
    pool.apply_async(
        fn, args, kwargs,
        callback=lambda value: deliver(done.set_result, value),
        error_callback=lambda exc: deliver(done.set_exception, exc),
    )
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        log.warning("agent file %s: job %s took over %g s; restarting the worker",
                    file, getattr(fn, "__name__", fn), timeout)
        await asyncio.to_thread(_discard, pool)
        raise AgentWorkTimeout(file, timeout) from None
