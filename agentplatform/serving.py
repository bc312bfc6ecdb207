"""``agentplatform serve [--workers N|auto]``: one process, or N on one port.

One Python process uses one core (the event loop; the GIL). ``--workers N`` runs N
worker processes behind one listening socket that this small supervisor binds and
hands down: whichever worker is free accepts the next connection, so a worker busy
with its calls takes fewer new ones. The workers share the database and Redis (the
concurrency limits, spent tokens and call records already work across processes).

SIGTERM (or Ctrl-C) to the supervisor is passed to every worker; each drains as a
single server does (``limits/drain.py``: new calls hear the draining message, live
calls run on until they end or the drain timeout), and the supervisor exits when the
last worker has. A worker that dies otherwise is started again.

SIP: a trunk sends every INVITE from one address, so a shared UDP port would pin all
of its calls to one worker. Instead each worker gets its own SIP port and its own
slice of the RTP range: worker ``i`` listens on ``SIP_LISTEN``'s port + ``i`` and uses
the ``i``-th of N equal parts of ``SIP_RTP_PORTS``. The trunk (or a SIP proxy in front,
such as Kamailio's dispatcher) lists every worker's port as a destination.

Media streams on their own port (``MEDIA_LISTEN``, ``carriers/twilio/media_listener.py``)
are shared the way the main port is: the supervisor binds that socket too and every
worker accepts on it (its descriptor in ``AGENTPLATFORM_MEDIA_FD``), so a busy worker
takes fewer new streams and a worker that restarts drops none waiting in the queue (as
each binding its own SO_REUSEPORT socket would). A stream reopened after DTMF may reach
another worker, which refuses it, as on the main port.

Overload: a full worker (``limits/headroom.py``) leaves new calls to a sibling with
room. The supervisor hands every worker a small shared board (``limits/worker_room.py``)
where each says whether one more call fits; with a media port, a full worker stops
accepting streams while a sibling has room, so the kernel gives the next stream to one
that accepts, and its webhooks take calls instead of refusing them. When no worker has
room, each refuses with the busy message, as one process does.

Every process also sets a short GIL switch interval (``SWITCH_INTERVAL_SECONDS``):
the call-record writer is a background thread, and each time the event loop lets go
of the GIL (a NumPy product, a random mask) the writer could otherwise keep it for
Python's default 5 ms, which every call would hear as a stall.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from agentplatform.limits.worker_room import ROOM_FD_ENV, RoomBoard

log = logging.getLogger(__name__)

SWITCH_INTERVAL_SECONDS = 0.0005
SWITCH_INTERVAL_ENV = "PYTHON_SWITCH_INTERVAL"  # seconds; to compare in the bench
RESTART_DELAY_SECONDS = 1.0
WORKER_ENV = "AGENTPLATFORM_WORKER"  # the worker's index, for its logs
MEDIA_FD_ENV = "AGENTPLATFORM_MEDIA_FD"  # the media listener's socket, in a worker


def parse_workers(value: str) -> int:
    """``auto`` (one per core this process may use) or a positive count."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--workers wants a number or auto, got {value!r}") from None
    if count < 1:
        raise ValueError(f"--workers must be at least 1, got {count}")
    return count


@dataclass(frozen=True, slots=True)
class WorkerSip:
    """One worker's SIP listen address and RTP range (empty when SIP is off)."""

    listen: str
    rtp_ports: str


def sip_for_worker(listen: str, rtp_ports: str, index: int, workers: int) -> WorkerSip:
    """Worker ``index`` of ``workers``: SIP port + index, and its share of the RTP range
    (even-aligned, as RTP takes even ports and RTCP the next)."""
    if not listen.strip():
        return WorkerSip("", rtp_ports)
    host, _, port = listen.strip().rpartition(":")
    if not port.isdigit():
        raise ValueError(f"SIP_LISTEN wants HOST:PORT, got {listen!r}")
    lo_text, _, hi_text = rtp_ports.partition("-")
    lo, hi = int(lo_text), int(hi_text)
    share = (hi - lo + 1) // workers
    share -= share % 2
    if share < 2:
        raise ValueError(f"SIP_RTP_PORTS {rtp_ports} is too small for {workers} workers")
    start = lo + index * share
    start += start % 2
    return WorkerSip(f"{host}:{int(port) + index}", f"{start}-{start + share - 1}")


def worker_environment(base: dict[str, str], index: int, workers: int) -> dict[str, str]:
    """The environment of worker ``index``: its SIP port and RTP slice, its index."""
    env = dict(base)
    env[WORKER_ENV] = str(index)
    sip = sip_for_worker(base.get("SIP_LISTEN", ""), base.get("SIP_RTP_PORTS", "20000-20999"),
                         index, workers)
    if sip.listen:
        env["SIP_LISTEN"] = sip.listen
        env["SIP_RTP_PORTS"] = sip.rtp_ports
    return env


def bind(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_app(app: object, *, host: str, port: int, log_level: str, fd: int | None = None) -> None:
    """One server process: uvloop, the short switch interval, uvicorn."""
    import uvicorn

    sys.setswitchinterval(float(os.environ.get(SWITCH_INTERVAL_ENV, SWITCH_INTERVAL_SECONDS)))
    options: dict[str, object] = {"log_level": log_level, "ws_max_size": 1 << 20, "loop": "uvloop"}
    if fd is None:
        uvicorn.run(app, host=host, port=port, **options)
    else:
        uvicorn.run(app, fd=fd, **options)


def _end_with_parent() -> None:
    """In a worker, before it runs: a supervisor killed outright (SIGKILL, OOM) takes its
    workers with it (Linux's parent-death signal), rather than leaving them orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def bind_media(listen: str) -> socket.socket | None:
    """The media listener's socket (``MEDIA_LISTEN``) for every worker, or ``None``."""
    if not listen.strip():
        return None
    from agentplatform.carriers.twilio.media_listener import parse_listen

    host, port = parse_listen(listen)
    return bind(host, port)


class Supervisor:
    """Starts N workers on one socket, restarts one that dies, drains all on SIGTERM."""

    def __init__(self, sock: socket.socket, workers: int, argv: list[str],
                 media: socket.socket | None | bool = True) -> None:
        """``media``: the media listener's socket; by default bound here from
        ``MEDIA_LISTEN`` when it is set."""
        self.sock = sock
        if media is True:
            from agentplatform.config import get_settings

            media = bind_media(get_settings().media_listen)
        self.media = media or None
        self.workers = workers
        self.board = RoomBoard.create(workers)  # which workers have room (overload)
        self.argv = argv  # the worker's command line, without --worker-fd/--worker-index
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def _start(self, index: int) -> None:
        fd = self.sock.fileno()
        cmd = [sys.executable, "-m", "agentplatform.cli", *self.argv,
               "--worker-fd", str(fd), "--worker-index", str(index)]
        env = worker_environment(dict(os.environ), index, self.workers)
        fds = [fd, self.board.fd]
        env[ROOM_FD_ENV] = str(self.board.fd)
        self.board.forget(index)  # no room there until it says so
        if self.media is not None:
            fds.append(self.media.fileno())
            env[MEDIA_FD_ENV] = str(self.media.fileno())
        # Its own session: a terminal's Ctrl-C or a signal to our process group reaches
        # the workers once, through us (a second SIGTERM would cut their drain short).
        self.procs[index] = subprocess.Popen(  # the supervisor runs no threads
            cmd, pass_fds=fds, env=env, start_new_session=True,
            preexec_fn=_end_with_parent)  # noqa: PLW1509
        log.info("worker %d started (pid %d)", index, self.procs[index].pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:  # a second signal: tell the workers to hurry (their drain skips)
            log.warning("second signal: workers end their live calls now")
        self.stopping = True
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.workers):
            self._start(index)
        log.warning("serving with %d workers on %s", self.workers, self.sock.getsockname())
        while self.procs:
            time.sleep(0.2)
            for index, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self.procs[index]
                self.board.forget(index)
                if not self.stopping:
                    log.error("worker %d exited with %s; starting it again", index, code)
                    time.sleep(RESTART_DELAY_SECONDS)
                    if not self.stopping:
                        self._start(index)
        self.sock.close()
        if self.media is not None:
            self.media.close()
        self.board.close()
        return 0
