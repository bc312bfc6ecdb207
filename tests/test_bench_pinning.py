"""The bench keeps the server and the load on separate cores."""

from __future__ import annotations

import os

import pytest

from agentplatform import bench


@pytest.mark.skipif(len(bench._CORES) < 2, reason="needs two cores to keep them apart")
def test_a_server_forked_by_the_pinned_bench_runs_on_the_servers_core_not_the_loads() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the bench process: pinned to the load's core, then starting a server
        try:
            bench._pin(1)
            child = os.fork()
            if child == 0:
                bench._pin(0)  # what start_server's preexec_fn does
                os.write(write, ",".join(map(str, sorted(os.sched_getaffinity(0)))).encode())
                os._exit(0)
            os.waitpid(child, 0)
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    server_cores = os.read(read, 100).decode()
    os.close(read)
    assert server_cores == str(bench._CORES[0])
    assert bench.load_core() == bench._CORES[1]
