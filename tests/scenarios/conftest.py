"""Scenario tests run the repository's own agents offline: the front desk (rules,
local voice) and the realtime desk on the bundled OpenAI Realtime simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentplatform.config import Settings
from agentplatform.scenarios.runner import RunOptions, ScenarioResult, run_scenario
from agentplatform.scenarios.spec import load_scenario

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"
EXAMPLES = REPO / "scenarios"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This machine's settings without its .env: no keys, the repository's agents."""
    return Settings(_env_file=None, agents_dir=AGENTS,  # type: ignore[call-arg]
                    database_url=f"sqlite:///{tmp_path / 'unused.db'}", openai_api_key="",
                    local_llm_url="")


@pytest.fixture
def write(tmp_path: Path):
    """Write a scenario file; returns its path."""
    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


async def run_text(path: Path, settings: Settings, **options: object) -> ScenarioResult:
    return await run_scenario(load_scenario(path), RunOptions(via="text", **options),  # type: ignore[arg-type]
                              settings=settings)
