"""``serve --workers``: worker counts, each worker's SIP port and RTP slice, and a
supervisor that serves on one port and drains every worker on SIGTERM."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentplatform.limits.worker_room import ROOM
from agentplatform.serving import (
    WORKER_ENV,
    parse_workers,
    sip_for_worker,
    worker_environment,
)


def test_auto_is_one_worker_per_usable_core() -> None:
    assert parse_workers("auto") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_a_worker_count_that_is_not_a_positive_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--workers"):
        parse_workers(bad)


def test_each_worker_gets_its_own_sip_port_and_a_disjoint_even_rtp_slice() -> None:
    slices = [sip_for_worker("0.0.0.0:5060", "20000-20999", i, 4) for i in range(4)]
    assert [s.listen for s in slices] == [f"0.0.0.0:{5060 + i}" for i in range(4)]
    ranges = [tuple(map(int, s.rtp_ports.split("-"))) for s in slices]
    assert all(lo % 2 == 0 and lo <= hi <= 20999 for lo, hi in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))


def test_an_rtp_range_too_small_to_share_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        sip_for_worker("0.0.0.0:5060", "20000-20003", 0, 4)


def test_without_sip_a_worker_environment_only_names_the_worker() -> None:
    env = worker_environment({"PATH": "/bin"}, 1, 2)
    assert env == {"PATH": "/bin", WORKER_ENV: "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_serve_one_port_and_all_exit_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "agents").mkdir()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "AGENTS_DIR": str(tmp_path / "agents"), "LOG_LEVEL": "warning", "SIP_LISTEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "agentplatform.cli", "serve", "--port",
                             str(port), "--workers", "2"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the workers never answered"
            time.sleep(0.2)
        workers = subprocess.run(["pgrep", "-f", "--", f"--port {port} --worker-fd"],
                                 capture_output=True, text=True, check=False).stdout.split()
        assert len(workers) == 2
        # Both idle: each says on the shared board that it has room for a call.
        environ = Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
        room_fd = next(v.split(b"=", 1)[1] for v in environ
                       if v.startswith(b"AGENTPLATFORM_ROOM_FD="))
        board = Path(f"/proc/{workers[0]}/fd/{room_fd.decode()}")
        while board.read_bytes() != bytes([ROOM, ROOM]):
            assert time.monotonic() < deadline, f"board says {board.read_bytes()!r}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        if proc.poll() is None:
            proc.kill()  # its workers follow it (parent-death signal)


def test_workers_end_when_their_supervisor_is_killed_outright(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "agents").mkdir()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "AGENTS_DIR": str(tmp_path / "agents"), "LOG_LEVEL": "warning", "SIP_LISTEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "agentplatform.cli", "serve", "--port",
                             str(port), "--workers", "2"], env=env, cwd=tmp_path)
    pattern = ["pgrep", "-f", "--", f"--port {port} --worker-fd"]
    try:
        deadline = time.monotonic() + 60
        while len(subprocess.run(pattern, capture_output=True, text=True, check=False).stdout.split()) < 2:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 60
    while subprocess.run(pattern, capture_output=True, text=True, check=False).stdout.split():
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.2)
