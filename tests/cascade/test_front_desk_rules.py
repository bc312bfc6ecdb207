"""The offline front desk does what its prompt says, even through recognition slips.

Transcripts here are the kind Whisper tiny.en writes on a phone line, slips included
(seen in the bench's recognition run: "What are your opening now?", "my tooth really
hurt", "My food really hurts").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentplatform.agents.store import AgentStore
from agentplatform.agents.spec import Rule
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.text.rules import RulesSession

AGENTS = Path(__file__).resolve().parents[2] / "agents"


@pytest.fixture(scope="module")
def desk() -> RulesSession:
    agent = AgentStore(AGENTS, load_catalog(), Settings(_env_file=None), environ={}).get(
        "front-desk")
    assert agent is not None
    return RulesSession(agent.spec.rules, agent.spec.fallback_reply or "")


def _transfers(rule: Rule | None) -> bool:
    return rule is not None and rule.tool is not None and rule.tool.name == "transfer_call"


@pytest.mark.parametrize("heard", [
    "My tooth really hurts.", "my tooth really hurt", "My food really hurts.",
    "It hurts when I chew.", "My gum is bleeding.", "My face is swollen.",
    "My faces swollen.", "I'm in a lot of pain.", "It's an emergency.", "I broke my tooth.",
    "Can I talk to a person please?", "I would like to speak to someone.",
    "My wisdom tooth is killing me.",
])
def test_a_caller_in_pain_or_asking_for_a_person_is_offered_a_transfer(
        desk: RulesSession, heard: str) -> None:
    assert _transfers(desk.match(heard)), heard


@pytest.mark.parametrize("heard", [
    "I have a toothache.", "I have a tooth ache.", "I've got a bad toothache",
    "My tooth aches.",
])
def test_a_toothache_gets_an_answer_about_toothaches_and_the_transfer(
        desk: RulesSession, heard: str) -> None:
    rule = desk.match(heard)
    assert _transfers(rule) and "toothache" in (rule.reply or ""), heard


@pytest.mark.parametrize("heard", [
    "Do you have parking?", "Is there parking behind the building?",
    "Where can I park my car?", "where can I power my car", "Is there a parking lot?",
])
def test_parking_questions_get_the_parking_answer(desk: RulesSession, heard: str) -> None:
    rule = desk.match(heard)
    assert rule is not None and "parking" in (rule.reply or "").lower(), heard


@pytest.mark.parametrize("heard", [
    "What are your opening hours?", "What are your opening now?",
    "what are you opening out?", "When do you close today?", "Are you open on Saturday?",
    "What time do you open tomorrow?",
])
def test_opening_hours_questions_get_the_hours(desk: RulesSession, heard: str) -> None:
    rule = desk.match(heard)
    assert rule is not None and "Monday to Friday" in (rule.reply or ""), heard


@pytest.mark.parametrize("heard", [
    "Can I book an appointment for Tuesday?", "I need a cleaning.",
    "Can I reschedule my checkup?", "I need to cancel my appointments.",
    "Do you take new patients?",
])
def test_booking_requests_get_a_call_back(desk: RulesSession, heard: str) -> None:
    rule = desk.match(heard)
    assert rule is not None and "call you back" in (rule.reply or ""), heard


def test_every_reply_opens_with_a_short_phrase_that_is_spoken_first(desk: RulesSession) -> None:
    from agentplatform.cascade.sentences import SentenceBuffer

    for _pattern, rule in desk._rules:
        buffer, pieces = SentenceBuffer(), []
        for word in (rule.reply or "").split(" "):  # streamed word by word, as the rules do
            pieces += buffer.feed(word + " ")
        assert pieces and len(pieces[0]) <= 60, rule.reply
