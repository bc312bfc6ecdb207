"""The pytest plugin: ``pytest --scenarios DIR`` runs scenario files as tests, and a
pytest run without the option collects nothing from them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.scenarios.conftest import AGENTS
from tests.scenarios.test_command import FAILING, PASSING


def pytest_run(directory: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTS_DIR": str(AGENTS), "OPENAI_API_KEY": ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *argv], cwd=directory, env=env, capture_output=True, text=True,
                          timeout=240, check=False)


def test_scenarios_run_as_tests_and_a_failure_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "a.yaml").write_text(PASSING)
    (tmp_path / "scenarios" / "b.yaml").write_text(FAILING)
    done = pytest_run(tmp_path, "--scenarios", "scenarios")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "scenario failing failed via text:" in done.stdout
    assert "says {contains: 'valet parking'}" in done.stdout


def test_a_malformed_scenario_is_a_collection_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(PASSING.replace("agent:", "agnet:"))
    done = pytest_run(tmp_path, "--scenarios", "bad.yaml")
    assert done.returncode == 2, done.stdout
    assert "agnet: unknown field 'agnet'" in done.stdout


def test_without_the_option_yaml_files_are_not_collected(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FAILING)
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    done = pytest_run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
