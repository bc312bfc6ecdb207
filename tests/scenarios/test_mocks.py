"""Webhook mocks: the scenario answers the agent's webhook tools, over a real socket."""

from __future__ import annotations

import json

import httpx

from agentplatform.agents.yamlio import load_document, to_plain
from agentplatform.scenarios.mocks import MockWebhooks, mocked_agent_text
from agentplatform.scenarios.spec import Mock
from tests.scenarios.conftest import AGENTS, run_text

BOOKING = """\
name: booking
agent: front-desk-realtime
turns:
  - say: "Could I book a check-up on Monday?"
    expect:
      - tool_called: {{name: check_availability, args: {{kind: check-up}}}}
mocks:
{mocks}
simulated_model:
  replies:
    - text: "I have nine or half past two."
  tool_rules:
    - {{contains: "check-up", name: check_availability, arguments: {{date: "2026-12-14", kind: check-up}}}}
"""


async def test_a_matching_mock_answers_the_agents_webhook(write, settings) -> None:
    mocks = """\
  - tool: check_availability
    args: {date: "2026-12-15"}
    returns: {times: ["16:00"]}
  - tool: check_availability
    args: {kind: check-up}
    returns: {date: "2026-12-14", times: ["09:00", "14:30"]}"""
    result = await run_text(write(BOOKING.format(mocks=mocks)), settings, simulated_model=True)
    assert result.status == "passed", (result.message, result.assertions)
    [tool] = result.tools
    assert tool.name == "check_availability" and tool.ok
    assert tool.arguments == {"date": "2026-12-14", "kind": "check-up"}
    assert json.loads(tool.result) == {"date": "2026-12-14", "times": ["09:00", "14:30"]}


async def test_a_call_no_mock_matches_fails_the_tool_and_says_why(write, settings) -> None:
    mocks = """\
  - tool: check_availability
    args: {kind: cleaning}
    returns: {times: []}"""
    result = await run_text(write(BOOKING.format(mocks=mocks)), settings, simulated_model=True)
    [tool] = result.tools
    assert not tool.ok
    assert "no mock in the scenario answers check_availability" in tool.result


def test_the_agent_copy_points_only_its_webhooks_at_the_mocks() -> None:
    mocks = MockWebhooks([])
    mocks._server.port = 4321  # not started: only the URLs are read here
    text = mocked_agent_text(AGENTS / "front-desk-realtime.yaml", mocks)
    tools = to_plain(load_document(text, file="copy"))["tools"]
    assert tools[0]["url"] == "http://127.0.0.1:4321/tools/check_availability"
    assert tools[0]["allow_private_network"] is True
    assert "headers_from_env" not in tools[0]
    assert [t["type"] for t in tools[1:]] == ["end_call", "transfer_call"]
    assert "# A webhook tool" in text  # the agent's comments survive


async def test_mocks_match_by_argument_subset_first_wins() -> None:
    answers = [Mock(tool="t", args={"a": 1}, returns="first"),
               Mock(tool="t", returns="any", status=503)]
    async with MockWebhooks(answers) as mocks, httpx.AsyncClient() as client:
        hit = await client.post(mocks.url_for("t"), json={"a": 1, "b": 2})
        other = await client.post(mocks.url_for("t"), json={"a": 2})
        unknown = await client.get(mocks.url_for("u"), params={"a": "1"})
    assert (hit.status_code, hit.json()) == (200, "first")
    assert (other.status_code, other.json()) == (503, "any")
    assert unknown.status_code == 501
    assert mocks.calls == [("t", {"a": 1, "b": 2}), ("t", {"a": 2}), ("u", {"a": "1"})]
