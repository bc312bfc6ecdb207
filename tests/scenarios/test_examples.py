"""The shipped examples (``scenarios/``) pass as text and as phone calls.

Call mode is real time (the caller speaks in the local voice and listens to every
answer), so the examples are kept short; the realtime desk's example runs on the
bundled OpenAI Realtime simulator (``--simulated-model``)."""

from __future__ import annotations

import pytest

from agentplatform.scenarios.runner import RunOptions, run_all
from agentplatform.scenarios.spec import load_all
from agentplatform.testing.line_impairments import LineImpairments
from tests.scenarios.conftest import EXAMPLES


def _failures(groups) -> list[str]:
    return [f"{r.scenario} via {r.via}: {r.status} {r.message} "
            f"{[(a.description, a.message) for a in r.failures]} {r.transcript}"
            for runs in groups for r in runs if r.status != "passed"]


async def test_the_examples_pass_as_text(settings) -> None:
    scenarios = load_all([EXAMPLES])
    assert {s.agent for s in scenarios} == {"front-desk", "front-desk-realtime"}
    groups = await run_all(scenarios, RunOptions(via="text", simulated_model=True),
                           settings=settings)
    assert _failures(groups) == []


@pytest.mark.timeout(600)
async def test_the_examples_pass_as_phone_calls(settings) -> None:
    groups = await run_all(load_all([EXAMPLES]), RunOptions(via="call", simulated_model=True),
                           settings=settings)
    assert _failures(groups) == []
    interrupted = next(r for runs in groups for r in runs if r.scenario == "stops-when-interrupted")
    assert interrupted.assertions[0].status == "passed"  # checked, not skipped


@pytest.mark.timeout(300)
async def test_the_pain_example_passes_over_sip(settings) -> None:
    [pain] = [s for s in load_all([EXAMPLES]) if s.name == "pain-gets-a-person"]
    groups = await run_all([pain], RunOptions(via="call", carrier="sip"), settings=settings)
    assert _failures(groups) == []
    assert groups[0][0].via == "call/sip"


@pytest.mark.timeout(300)
async def test_the_pain_example_passes_over_a_bad_line(settings) -> None:
    [pain] = [s for s in load_all([EXAMPLES]) if s.name == "pain-gets-a-person"]
    line = LineImpairments(noise_db=-50, loss=0.01, jitter_ms=20)
    groups = await run_all([pain], RunOptions(via="call", line=line), settings=settings)
    assert _failures(groups) == []
