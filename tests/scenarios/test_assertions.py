"""Each assertion kind, passing and failing, on the record a real conversation left.

The records come from the offline front desk driven over the chat path (text mode),
so the assertions read what a call record really holds: transcript, tool calls,
per-answer latency, cost, end reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentplatform.scenarios.assertions import Context, evaluate, normalise
from agentplatform.scenarios.record import slice_record
from agentplatform.scenarios.spec import Assertion, Turn
from agentplatform.storage.models import CallDetail, CallEventPublic, TurnPublic
from tests.scenarios.conftest import run_text

PAIN = """\
name: pain
agent: front-desk
turns:
  - say: "Hi, I have a terrible toothache."
    expect:
{turn}
  - say: "Thanks, bye."
expect:
{whole}
"""

HOURS = """\
name: hours
agent: front-desk
turns:
  - say: "What are your hours?"
  - say: "Goodbye."
expect:
{whole}
"""


def statuses(result) -> list[tuple[str, str]]:
    return [(a.description, a.status) for a in result.assertions]


async def test_pain_record_passes_and_fails_each_kind_as_it_should(write, settings) -> None:
    turn = "\n".join(f"      - {line}" for line in [
        "tool_called: {name: transfer_call}",                                   # passes
        "tool_called: {name: transfer_call, args: {destination: front desk staff}}",  # passes
        "tool_called: {name: transfer_call, args: {destination: the dentist}}",  # fails
        "tool_called: {name: end_call}",                                        # fails
        "tool_not_called: end_call",                                            # passes
        "tool_not_called: transfer_call",                                       # fails
        "says: {contains: same-day appointments}",                              # passes
        "says: {contains: we are closed}",                                      # fails
    ])
    whole = "\n".join(f"  - {line}" for line in [
        "says: {not_contains: ibuprofen}",      # passes
        "says: {not_contains: toothaches}",     # fails
        "says: {regex: 'front desk (staff|team)'}",  # passes
        "says: {regex: '^Goodbye'}",            # fails
        "ended_by: transfer",                   # passes
        "ended_by: agent",                      # fails
        "cost_usd_max: 0",                      # passes (the rules cost nothing)
        "latency: {max_ms: 60000}",             # passes
        "latency: {p50_ms_max: 0.0001}",        # fails
        "judge: the agent is kind",             # skipped: no --judge
        "interrupted: {truncated: true}",       # skipped: text has no line
    ])
    result = await run_text(write(PAIN.format(turn=turn, whole=whole)), settings)
    assert result.status == "failed"
    got = [status for _, status in statuses(result)]
    assert got == ["passed", "passed", "failed", "failed", "passed", "failed", "passed",
                   "failed", "passed", "failed", "passed", "failed", "passed", "failed",
                   "passed", "passed", "failed", "skipped", "skipped"], statuses(result)
    messages = {a.description: a.message for a in result.assertions}
    assert "never with {'destination': 'the dentist'}" in \
        messages["tool_called {name: 'transfer_call', args: {'destination': 'the dentist'}}"]
    assert messages["ended_by: 'agent'"] == "the conversation was ended by transfer (transferred)"
    assert "p50 latency" in messages["latency {p50_ms_max: 0.0001}"]
    # The second turn was never reached: the call was transferred.
    assert [role for role, _ in result.transcript] == ["assistant", "user", "assistant"]


async def test_the_agent_ending_the_call_is_ended_by_agent(write, settings) -> None:
    whole = "\n".join(f"  - {line}" for line in [
        "ended_by: agent", "ended_by: caller", "tool_called: end_call",
        "says: {contains: 'Monday to Friday, from 8 in the morning'}"])
    result = await run_text(write(HOURS.format(whole=whole)), settings)
    assert [s for _, s in statuses(result)] == ["passed", "failed", "passed", "passed"]


async def test_a_turn_assertion_sees_only_its_own_turn(write, settings) -> None:
    text = """\
name: turns
agent: front-desk
turns:
  - say: "What are your hours?"
    expect:
      - tool_not_called: end_call
      - says: {not_contains: Goodbye}
  - say: "Goodbye."
    expect:
      - tool_called: end_call
      - says: {not_contains: Monday}
"""
    result = await run_text(write(text), settings)
    assert result.status == "passed", result.assertions


def test_numbers_are_normalised_before_matching() -> None:
    assert normalise("We open at Eight, and close at 1,200 hours") == \
        "we open at 8, and close at 1200 hours"


def _record(*, cost: float = 0.0, events: list[CallEventPublic] | None = None,
            interrupted: bool = False) -> CallDetail:
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    at = start + timedelta(seconds=2)
    return CallDetail(id="c1", carrier_call_id="CA1", agent="front-desk", model="m",
                      requested_model="m", cost_usd=cost, end_reason="caller_hung_up",
                      turns=[TurnPublic(id=1, call_id="c1", seq=1, role="assistant",
                                        text="We're open …", interrupted=interrupted,
                                        latency_ms=400.0, created_at=at)],
                      events=events or [])


async def check(assertion: dict, call: CallDetail, *, mode: str = "call",
                turn: Turn | None = None) -> tuple[str, str]:
    mark = datetime(2026, 12, 7, 9, 0, 1, tzinfo=UTC)
    record = slice_record(call, [mark])
    parsed = Assertion.model_validate(assertion)
    outcome = await evaluate(parsed, record.turns[0], Context(record, mode, turn))
    return outcome.status, outcome.message


async def test_cost_over_the_bound_fails() -> None:
    assert (await check({"cost_usd_max": 0.05}, _record(cost=0.01)))[0] == "passed"
    status, message = await check({"cost_usd_max": 0.05}, _record(cost=0.12))
    assert (status, message) == ("failed", "the call cost $0.1200 > $0.0500")


@pytest.mark.parametrize(("heard_ms", "bound", "status"), [(900.0, 500, "passed"),
                                                            (1600.0, 500, "failed")])
async def test_interrupted_measures_how_long_the_agent_kept_talking(heard_ms, bound,
                                                                   status) -> None:
    barge = CallEventPublic(id=1, call_id="c1", kind="barge_in",
                            detail={"heard_ms": heard_ms, "sent_ms": 5000},
                            created_at=datetime(2026, 12, 7, 9, 0, 2, tzinfo=UTC))
    turn = Turn.model_validate({"say": "where are you", "barge_in": {"after_ms": 700}})
    got = await check({"interrupted": {"stopped_within_ms": bound, "truncated": True}},
                      _record(events=[barge], interrupted=True), turn=turn)
    assert got[0] == status, got


async def test_interrupted_fails_without_a_barge_in_and_skips_in_text() -> None:
    assert (await check({"interrupted": {"truncated": True}}, _record()))[0] == "failed"
    assert (await check({"interrupted": {"truncated": True}}, _record(), mode="text"))[0] == \
        "skipped"
