"""The scenario file's shape: every problem names the file, the field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentplatform.scenarios.spec import ScenarioInvalid, load_all, load_scenario

GOOD = """\
name: pain-gets-a-person
agent: front-desk
turns:
  - say: "Hi, I have a terrible toothache."
    expect:
      - tool_called: {name: transfer_call, args: {destination: front desk staff}}
  - silence_ms: 500
  - dtmf: "12#"
  - audio: caller.wav
    barge_in: {after_ms: 700}
expect:
  - says: {not_contains: ibuprofen}
  - tool_not_called: end_call
  - ended_by: transfer
  - latency: {p50_ms_max: 1200}
  - cost_usd_max: 0.05
  - interrupted: {stopped_within_ms: 500, truncated: true}
  - judge: "The agent never gives medical advice."
mocks:
  - tool: check_availability
    args: {date: "2026-12-14"}
    returns: {times: ["09:00"]}
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(path)
    return [str(issue) for issue in caught.value.issues]


def test_a_file_with_every_turn_and_assertion_kind_loads(write) -> None:
    scenario = load_scenario(write(GOOD))
    assert [t.action for t in scenario.turns] == ["say", "silence_ms", "dtmf", "audio"]
    assert [a.kind for _, a in scenario.assertions()] == [
        "tool_called", "says", "tool_not_called", "ended_by", "latency", "cost_usd_max",
        "interrupted", "judge"]
    assert scenario.turns[0].expect[0].tool_called.args == {"destination": "front desk staff"}
    assert scenario.expect[1].tool_not_called.name == "end_call"  # the short form
    assert scenario.mocks[0].returns == {"times": ["09:00"]}


def test_an_unknown_field_is_named_with_its_file_and_line(write) -> None:
    path = write(GOOD.replace("  - silence_ms: 500", "  - silence_ms: 500\n    wait: 3"))
    assert problems(path) == [f"{path}:8: error: turns[1].wait: unknown field 'wait'"]


def test_a_turn_doing_two_things_is_refused(write) -> None:
    path = write(GOOD.replace('  - dtmf: "12#"', '  - dtmf: "12#"\n    say: hello'))
    [problem] = problems(path)
    assert f"{path}:8: error: turns[2]:" in problem
    assert "one of: say, audio, dtmf, silence_ms; got say, dtmf" in problem


def test_an_assertion_of_two_kinds_is_refused(write) -> None:
    path = write(GOOD.replace("  - ended_by: transfer", "  - ended_by: transfer\n    cost_usd_max: 1"))
    [problem] = problems(path)
    assert "expect[2]:" in problem and "got ended_by, cost_usd_max" in problem


@pytest.mark.parametrize(("old", "new", "field", "words"), [
    ("says: {not_contains: ibuprofen}", "says: {}", "expect[0].says",
     "give contains, not_contains or regex"),
    ("says: {not_contains: ibuprofen}", "says: {regex: '(unclosed'}", "expect[0].says",
     "regex does not compile"),
    ("ended_by: transfer", "ended_by: nobody", "expect[2].ended_by", "'agent', 'caller' or 'transfer'"),
    ("latency: {p50_ms_max: 1200}", "latency: {}", "expect[3].latency", "give p50_ms_max"),
    ("cost_usd_max: 0.05", "cost_usd_max: -1", "expect[4].cost_usd_max", "greater than or equal to 0"),
    ("tool_called: {name: transfer_call, args: {destination: front desk staff}}",
     "tool_called: {args: {}}", "turns[0].expect[0].tool_called.name", "required field is missing"),
    ('dtmf: "12#"', 'dtmf: "12x"', "turns[2].dtmf", "should match pattern"),
    ("barge_in: {after_ms: 700}", "barge_in: {after_ms: 0}", "turns[3].barge_in.after_ms",
     "greater than 0"),
    ("name: pain-gets-a-person", "name: Pain Gets", "name", "should match pattern"),
    ("returns: {times: [\"09:00\"]}", "returns: 1\n    status: 99", "mocks[0].status",
     "greater than or equal to 200"),
])
def test_a_bad_value_is_named_by_its_dotted_field(write, old, new, field, words) -> None:
    path = write(GOOD.replace(old, new))
    found = problems(path)
    assert any(f": error: {field}: " in p and words in p for p in found), found


def test_barge_in_goes_only_with_speech(write) -> None:
    path = write(GOOD.replace('  - dtmf: "12#"', '  - dtmf: "12#"\n    barge_in: {after_ms: 5}'))
    assert any("turns[2]: barge_in goes with say or audio" in p for p in problems(path))


def test_missing_name_agent_and_turns_are_each_reported(write) -> None:
    found = problems(write("description: nothing else\n"))
    assert [p.split(": error: ")[1] for p in found] == [
        "name: required field is missing", "agent: required field is missing",
        "turns: required field is missing"]


def test_broken_yaml_names_the_line(write) -> None:
    [problem] = problems(write("name: x\nturns: [\n"))
    assert ": error: (file): line 3" in problem


def test_a_file_that_is_not_a_mapping_is_refused(write) -> None:
    [problem] = problems(write("- say: hi\n"))
    assert "a scenario file must be a mapping" in problem


def test_load_all_reports_every_bad_file_and_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)  # the same name again
    (tmp_path / "c.yaml").write_text("name: c\nagent: x\nturns: []\n")
    (tmp_path / "notes.txt").write_text("not a scenario")
    with pytest.raises(ScenarioInvalid) as caught:
        load_all([tmp_path])
    found = [str(i) for i in caught.value.issues]
    assert any(p.startswith(f"{tmp_path / 'b.yaml'}: error: name: 'pain-gets-a-person' is also")
               for p in found)
    assert any(p.startswith(f"{tmp_path / 'c.yaml'}:3: error: turns:") for p in found)
    assert len(found) == 2


def test_a_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioInvalid, match="no such file or folder"):
        load_all([tmp_path / "missing"])
