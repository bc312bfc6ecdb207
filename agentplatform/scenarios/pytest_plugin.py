"""Run scenario files as pytest tests: ``pytest --scenarios scenarios/``.

Installed with the package (a ``pytest11`` entry point), so it is loaded by every
pytest run; without ``--scenarios`` it only adds its options and collects nothing,
and it imports nothing of the platform until a scenario runs. With it, each
scenario file is one test (``scenario-name[text]``); a failed assertion fails it
with the assertion and what the record held, a skipped scenario is a pytest skip.

    pytest --scenarios scenarios/                        # only the scenarios
    pytest tests/ --scenarios scenarios/                 # beside your tests
    pytest --scenarios scenarios/ --scenarios-via call   # as phone calls
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scenarios", "agent conversation scenarios")
    group.addoption("--scenarios", action="append", default=[], metavar="PATH",
                    help="run the scenario files in PATH (a file or folder) as tests")
    group.addoption("--scenarios-via", choices=["text", "call"], default="text",
                    help="text (the chat path) or call (a simulated phone call)")
    group.addoption("--scenarios-simulated-model", action="store_true",
                    help="serve OpenAI Realtime agents from the bundled simulator")


def pytest_configure(config: pytest.Config) -> None:
    paths = [str(Path(p)) for p in config.getoption("scenarios", default=[]) or []]
    if not paths:
        return
    # ``pytest --scenarios x`` alone runs the scenarios, not the project's testpaths too.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = paths
    else:
        config.args.extend(p for p in paths if p not in config.args)


def _scenario_roots(config: pytest.Config) -> list[Path]:
    return [Path(p).resolve() for p in config.getoption("scenarios", default=[]) or []]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in SUFFIXES:
        return None
    roots = _scenario_roots(parent.config)
    resolved = file_path.resolve()
    if any(resolved == root or root in resolved.parents for root in roots):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Any:
        from agentplatform.scenarios.spec import ScenarioInvalid, load_scenario

        try:
            scenario = load_scenario(self.path)
        except ScenarioInvalid as exc:
            raise self.CollectError(str(exc)) from None
        via = self.config.getoption("scenarios_via")
        yield ScenarioItem.from_parent(self, name=f"{scenario.name}[{via}]", scenario=scenario,
                                       via=via)


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, via: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.via = via

    def runtest(self) -> None:
        import asyncio

        from agentplatform.scenarios.runner import RunOptions, run_scenario

        options = RunOptions(via=self.via, simulated_model=bool(
            self.config.getoption("scenarios_simulated_model")))
        result = asyncio.run(run_scenario(self.scenario, options))
        if result.status == "skipped":
            pytest.skip(result.message)
        if result.status != "passed":
            lines = [result.message] if result.message else []
            lines += [f"{'conversation' if a.turn is None else f'turns[{a.turn}]'}: "
                      f"{a.description}: {a.message}" for a in result.failures]
            lines += [f"  {role:>9}: {text}" for role, text in result.transcript]
            raise ScenarioFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return f"scenario {self.scenario.name} failed via {self.via}:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.name} via {self.via}"
