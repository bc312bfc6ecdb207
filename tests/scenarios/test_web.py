"""The agent's Tests page runs its scenarios off the event loop and shows the last
results; the call page offers a scenario made from the call."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from agentplatform.agents.yamlio import load_document, to_plain
from agentplatform.records import CallStart, EndReason
from agentplatform.scenarios.spec import parse_scenario
from tests.scenarios.conftest import AGENTS
from tests.scenarios.test_command import FAILING, PASSING
from tests.web.conftest import csrf_of, served


def _layout(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    shutil.copy(AGENTS / "front-desk.yaml", tmp_path / "agents" / "front-desk.yaml")
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "a.yaml").write_text(PASSING)
    (tmp_path / "scenarios" / "b.yaml").write_text(FAILING)
    (tmp_path / "scenarios" / "other.yaml").write_text(
        PASSING.replace("name: passing", "name: someone-else").replace(
            "agent: front-desk", "agent: after-hours"))


async def test_the_tests_page_runs_the_agents_scenarios_and_shows_results(tmp_path) -> None:
    _layout(tmp_path)
    async with served(tmp_path) as client:
        agent_page = await client.get("/agents/front-desk")
        assert '<a href="/agents/front-desk/tests" role="tab"' in agent_page.text
        page = await client.get("/agents/front-desk/tests")
        assert page.status_code == 200
        assert 'data-scenario="passing"' in page.text and 'data-scenario="failing"' in page.text
        assert "someone-else" not in page.text  # another agent's scenario
        assert page.text.count("not run yet") == 2
        started = await client.post("/agents/front-desk/tests",
                                    data={"csrf_token": csrf_of(page.text)})
        assert started.status_code == 303
        # The server keeps answering while the run goes on in its worker thread.
        for _ in range(300):
            page = await client.get("/agents/front-desk/tests")
            if "Running…" not in page.text:
                break
            await asyncio.sleep(0.1)
    assert "Last run finished" in page.text
    assert "<strong class=\"\">passed</strong>" in page.text
    assert "<strong class=\"err\">failed</strong>" in page.text
    assert "turn 1: says {contains: &#39;valet parking&#39;}: the agent never said" in page.text


async def test_running_needs_the_csrf_token(tmp_path) -> None:
    _layout(tmp_path)
    async with served(tmp_path) as client:
        refused = await client.post("/agents/front-desk/tests", data={})
        assert refused.status_code == 403


async def test_a_malformed_scenario_is_shown_and_nothing_runs(tmp_path) -> None:
    _layout(tmp_path)
    (tmp_path / "scenarios" / "c.yaml").write_text("name: c\nagent: front-desk\nturns: []\n")
    async with served(tmp_path) as client:
        page = await client.get("/agents/front-desk/tests")
    assert "A scenario file is malformed" in page.text
    assert "c.yaml:3: error: turns:" in page.text
    assert 'id="run-tests" disabled' in page.text


async def test_the_call_page_offers_a_test_made_from_the_call(tmp_path) -> None:
    _layout(tmp_path)
    async with served(tmp_path) as client:
        writer = client.server.platform.writer  # type: ignore[attr-defined]
        call_id = "d" * 32
        writer.call_started(CallStart(call_id=call_id, carrier_call_id="CA9", agent="front-desk",
                                      model="local/offline", carrier="twilio"))
        writer.turn(call_id, "assistant", "Thank you for calling.")
        writer.turn(call_id, "user", "My tooth hurts.")
        writer.tool_invocation(call_id, "transfer_call", '{"destination": "front desk staff"}',
                               "transferring", ok=True, duration_ms=1.0)
        writer.call_ended(call_id, EndReason.TRANSFERRED)
        await writer.flush()
        page = await client.get(f"/calls/{call_id}")
        assert f'href="/calls/{call_id}/scenario.yaml"' in page.text
        made = await client.get(f"/calls/{call_id}/scenario.yaml")
        missing = await client.get("/calls/nope/scenario.yaml")
    assert made.status_code == 200
    assert made.headers["content-disposition"] == \
        f'attachment; filename="from-call-{call_id[:12]}.yaml"'
    scenario = parse_scenario(to_plain(load_document(made.text, file="made.yaml")),
                              file="made.yaml")
    assert scenario.turns[0].say == "My tooth hurts."
    assert scenario.turns[0].expect[0].tool_called.name == "transfer_call"
    assert scenario.expect[0].ended_by == "transfer"
    assert missing.status_code == 404
