"""The bench keeps the server and the load on separate cores."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentplatform import bench

# The bench process pins itself to the load's core, then starts a server the way
# ``bench.start_server`` does (pinned in ``preexec_fn``); the server reports its cores.
_BENCH = """
import os, subprocess, sys
from agentplatform import bench
bench._pin(1)
report = "import os; print(','.join(map(str, sorted(os.sched_getaffinity(0)))))"
server = subprocess.run([sys.executable, "-c", report], preexec_fn=lambda: bench._pin(0),
                        capture_output=True, text=True, check=True)
print(server.stdout.strip())
"""


@pytest.mark.skipif(len(bench._CORES) < 2, reason="needs two cores to keep them apart")
def test_a_server_started_by_the_pinned_bench_runs_on_the_servers_core_not_the_loads() -> None:
    server_cores = subprocess.run([sys.executable, "-c", _BENCH], capture_output=True,
                                  text=True, check=True).stdout.strip()
    assert server_cores == str(bench._CORES[0])
    assert bench.load_core() == bench._CORES[1]
