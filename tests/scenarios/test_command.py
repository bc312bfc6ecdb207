"""``agentplatform test``: exit codes, reports, repeats, and a test made from a call."""

from __future__ import annotations

import io
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from agentplatform.agents.store import AgentStore
from agentplatform.catalog import load_catalog
from agentplatform.cli import build_parser
from agentplatform.scenarios import reports
from agentplatform.scenarios.command import run_test_command
from agentplatform.scenarios.runner import ScenarioResult
from agentplatform.scenarios.skeleton import skeleton
from agentplatform.scenarios.spec import load_scenario, parse_scenario
from agentplatform.scenarios.text_mode import run_text
from tests.scenarios.conftest import AGENTS

PASSING = """\
name: passing
agent: front-desk
turns:
  - say: "Where do I park?"
    expect:
      - says: {contains: free parking}
"""
FAILING = PASSING.replace("name: passing", "name: failing").replace(
    "free parking", "valet parking")


@pytest.fixture
def cli(monkeypatch, settings):
    """Run the command as ``agentplatform test …`` would, on the test settings."""
    monkeypatch.setattr("agentplatform.scenarios.runner.get_settings", lambda: settings)

    def run(*argv: str) -> tuple[int, str, str]:
        args = build_parser().parse_args(["test", "--agents", str(AGENTS), *argv])
        out, err = io.StringIO(), io.StringIO()
        return run_test_command(args, out=out, err=err), out.getvalue(), err.getvalue()
    return run


def test_every_scenario_passing_exits_0(cli, write) -> None:
    code, out, _ = cli(str(write(PASSING)))
    assert code == 0
    assert out.splitlines()[-1] == "1 passed, 0 failed, 0 errors, 0 skipped"


def test_a_failing_scenario_exits_1_and_says_what_the_record_held(cli, write) -> None:
    code, out, _ = cli(str(write(PASSING, "a.yaml")), str(write(FAILING, "b.yaml")))
    assert code == 1
    assert "FAIL  failing" in out
    assert "turns[0]: says {contains: 'valet parking'}: the agent never said 'valet parking'" in out
    assert "free parking behind the building" in out  # the transcript is shown


def test_a_malformed_file_exits_2_naming_file_and_field_and_runs_nothing(cli, write) -> None:
    bad = write(PASSING.replace("say:", "sya:"), "bad.yaml")
    code, out, err = cli(str(write(PASSING, "good.yaml")), str(bad))
    assert code == 2
    assert f"{bad}:4: error: turns[0].sya: unknown field 'sya'" in err
    assert out == ""


@pytest.mark.parametrize(("argv", "words"), [
    (["--loss", "0.1"], "add --via call"),
    (["--loss", "1.5", "--via", "call"], "0 ≤ loss < 1"),
    (["--repeat", "0"], "--repeat wants 1 or more"),
    (["--judge"], "JUDGE_URL"),
    (["--carrier", "sip"], "--carrier sip places phone calls"),
    (["--carrier", "sip", "--via", "call", "--noise-db", "-40"], "not with --carrier sip"),
])
def test_a_wrong_command_exits_2(cli, write, monkeypatch, argv, words) -> None:
    monkeypatch.delenv("JUDGE_URL", raising=False)
    code, _, err = cli(str(write(PASSING)), *argv)
    assert code == 2 and words in err


def test_junit_and_json_reports_hold_each_run(cli, write, tmp_path: Path) -> None:
    junit, report = tmp_path / "out" / "junit.xml", tmp_path / "out" / "report.json"
    code, _, _ = cli(str(write(PASSING, "a.yaml")), str(write(FAILING, "b.yaml")),
                     "--junit", str(junit), "--json", str(report))
    assert code == 1
    suite = ElementTree.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"passing[text]", "failing[text]"}
    failure = cases["failing[text]"].find("failure")
    assert failure is not None and "valet parking" in failure.get("message", "")
    assert cases["passing[text]"].find("failure") is None
    data = json.loads(report.read_text())
    by_name = {s["scenario"]: s for s in data["scenarios"]}
    assert by_name["passing"]["status"] == "passed" and by_name["failing"]["status"] == "failed"
    assert by_name["failing"]["runs"][0]["assertions"][0]["status"] == "failed"


def test_repeat_reports_pass_rate_and_latency_percentiles(cli, write, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, out, _ = cli(str(write(PASSING)), "--repeat", "3", "--json", str(report))
    assert code == 0
    [summary] = json.loads(report.read_text())["scenarios"]
    assert (summary["runs"].__len__(), summary["passed"], summary["pass_rate"]) == (3, 3, 1.0)
    latencies = [ms for run in summary["runs"] for ms in run["latencies_ms"]]
    assert len(latencies) == 3
    assert summary["latency_max_ms"] == max(latencies)
    assert "3/3 passed (100%)" in out


def _result(status: str, latencies: list[float]) -> ScenarioResult:
    return ScenarioResult("s", "s.yaml", "a", "text", status, 1.0, latencies_ms=latencies)


def test_summary_counts_skips_out_of_the_pass_rate() -> None:
    summary = reports.summarise([_result("passed", [100, 300]), _result("failed", [200]),
                                 _result("passed", [400]), _result("skipped", [])])
    assert (summary.passed, summary.failed, summary.skipped) == (2, 1, 1)
    assert summary.pass_rate == pytest.approx(2 / 3, abs=1e-3)
    assert (summary.latency_p50_ms, summary.latency_p95_ms, summary.latency_max_ms) == \
        (200, 400, 400)
    assert summary.status == "failed"
    assert reports.exit_code([summary]) == 1


async def test_a_call_record_becomes_a_scenario_that_passes(sqlite_engine, settings, write,
                                                           tmp_path: Path) -> None:
    catalog = load_catalog()
    agent = AgentStore(AGENTS, catalog, settings).get("front-desk")
    assert agent is not None
    source = load_scenario(write("""\
name: original
agent: front-desk
turns:
  - say: "What are your hours?"
  - say: "I need to talk to a person."
"""))
    run = await run_text(source, agent.spec, engine=sqlite_engine, catalog=catalog,
                         settings=settings)
    data = skeleton(run.call)
    assert data["turns"] == [
        {"say": "What are your hours?"},
        {"say": "I need to talk to a person.",
         "expect": [{"tool_called": {"name": "transfer_call",
                                     "args": {"destination": "front desk staff"}}}]}]
    assert data["expect"] == [{"ended_by": "transfer"}]
    # The skeleton is a valid scenario, and it passes against the same agent.
    from agentplatform.scenarios.skeleton import skeleton_yaml

    path = write(skeleton_yaml(run.call), "made.yaml")
    made = load_scenario(path)
    assert made.name == f"from-call-{run.call.id[:12]}"
    from tests.scenarios.conftest import run_text as run_scenario_text

    assert (await run_scenario_text(path, settings)).status == "passed"


def test_from_call_writes_the_skeleton_file(cli, monkeypatch, sqlite_engine, settings,
                                            tmp_path: Path) -> None:
    from agentplatform.records import CallStart, EndReason
    from agentplatform.storage.writer import CallWriter

    writer = CallWriter(sqlite_engine)
    writer.call_started(CallStart(call_id="c" * 32, carrier_call_id="CA1", agent="front-desk",
                                  model="local/offline", carrier="twilio"))
    writer.turn("c" * 32, "user", "Where are you?")
    writer.call_ended("c" * 32, EndReason.CALLER_HUNG_UP)
    writer.close()
    url = str(sqlite_engine.url)
    monkeypatch.setattr("agentplatform.config.get_settings",
                        lambda: settings.model_copy(update={"database_url": url}))
    target = tmp_path / "made.yaml"
    code, out, _ = cli("--from-call", "c" * 32, "--out", str(target))
    assert code == 0 and "1 caller turns" in out
    made = load_scenario(target)
    assert [t.say for t in made.turns] == ["Where are you?"]
    assert made.expect[0].ended_by == "caller"
    assert cli("--from-call", "c" * 32, "--out", str(target))[0] == 2  # never overwritten
    assert cli("--from-call", "nope", "--out", str(tmp_path / "x.yaml"))[0] == 2


def test_a_skeleton_with_no_caller_words_is_still_valid() -> None:
    from agentplatform.storage.models import CallDetail

    call = CallDetail(id="abc", carrier_call_id="CA", agent="front-desk", model="m",
                      requested_model="m", end_reason="idle_timeout")
    parse_scenario(skeleton(call), file="made.yaml")


def test_an_agent_whose_key_is_missing_is_skipped_with_the_reason(cli, write, tmp_path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    text = (AGENTS / "front-desk-realtime.yaml").read_text()
    (agents / "gem.yaml").write_text(
        text.replace("name: front-desk-realtime", "name: gem")
        .replace("model: openai/gpt-realtime", "model: google/gemini-2.5-flash-native-audio")
        .replace("voice: marin", "voice: Puck"))
    path = write("name: gem\nagent: gem\nturns:\n  - say: hi\n")
    code, out, _ = cli(str(path), "--agents", str(agents), "--simulated-model")
    assert code == 0
    assert "SKIP  gem" in out
    assert "google/gemini-2.5-flash-native-audio needs GEMINI_API_KEY; set it" in out
