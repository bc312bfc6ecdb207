from __future__ import annotations

import pytest

from agentplatform.agents.issues import AgentInvalid, Issue, dotted, error, parse_dotted, warning
from agentplatform.errors import AgentError


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("max_output_tokens",), "max_output_tokens"),
        (("tools", 1, "url"), "tools[1].url"),
        (("tools", 0, "destinations", "front desk"), "tools[0].destinations.front desk"),
        (("phone_numbers", 2), "phone_numbers[2]"),
    ],
)
def test_dotted_paths_round_trip(loc: tuple, path: str) -> None:
    assert dotted(loc) == path
    assert tuple(parse_dotted(path)) == loc


def test_issue_text_names_file_line_severity_and_field() -> None:
    issue = Issue("error", "agents/a.yaml", "tools[1].url", "bad url", line=7)
    assert str(issue) == "agents/a.yaml:7: error: tools[1].url: bad url"
    assert str(warning("a.yaml", "voice", "hm")) == "a.yaml: warning: voice: hm"


def test_agent_invalid_is_an_agent_error_carrying_all_issues() -> None:
    issues = [warning("a.yaml", "voice", "w"), error("a.yaml", "model", "unknown")]
    exc = AgentInvalid(issues)
    assert isinstance(exc, AgentError)
    assert (exc.file, exc.field, exc.message) == ("a.yaml", "model", "unknown")
    assert exc.issues == issues


def test_agent_invalid_refuses_a_list_without_errors() -> None:
    with pytest.raises(ValueError):
        AgentInvalid([warning("a.yaml", "voice", "w")])
