"""The turn-end judge: finished sentences end a turn quickly, cut-off phrases do not."""

from __future__ import annotations

import pytest

from agentplatform.cascade.turn_end import HANGOVERS, TurnEndPolicy, Verdict, judge


@pytest.mark.parametrize("text", [
    "What are your opening hours?", "I have a toothache.", "Do you have parking?",
    "Thank you, goodbye.", "Yes", "thank you", "Can I book a cleaning for Tuesday?",
])
def test_a_finished_question_or_short_reply_is_complete(text: str) -> None:
    assert judge(text) is Verdict.COMPLETE


@pytest.mark.parametrize("text", [
    "I'd like to book...", "I'd like to book an", "My address is,", "Can I",
    "What are your", "I was wondering if", "I need to", "Is there parking near the",
    "I would like an appointment for", "um", "Do you have",
    "I'd like to book an appointment for Tuesday and", "I'd like to book.", "I need to.",
])
def test_a_phrase_cut_off_mid_sentence_is_incomplete(text: str) -> None:
    assert judge(text) is Verdict.INCOMPLETE


@pytest.mark.parametrize("text", ["", "  ", "...", "?"])
def test_no_words_is_no_verdict(text: str) -> None:
    assert judge(text) is Verdict.EMPTY


def test_the_verdict_picks_the_hangover_and_no_words_keep_the_agents_own() -> None:
    auto = HANGOVERS["auto"]
    policy = TurnEndPolicy(auto, silence_ms=400)
    assert policy.hangover_ms(Verdict.COMPLETE) == auto.complete_ms
    assert policy.hangover_ms(Verdict.INCOMPLETE) == auto.incomplete_ms
    assert policy.hangover_ms(Verdict.EMPTY) == 400


def test_a_pause_waiting_for_its_verdict_lasts_as_long_as_an_unfinished_one() -> None:
    # Ending it on the clock would answer a caller mid-sentence whenever STT is slow.
    assert TurnEndPolicy(HANGOVERS["auto"], silence_ms=400).undecided_ms == \
        HANGOVERS["auto"].incomplete_ms
    assert TurnEndPolicy(HANGOVERS["auto"], silence_ms=2000).undecided_ms == 2000


def test_every_eagerness_waits_longer_for_an_unfinished_phrase_than_a_thinking_pause() -> None:
    # The bench's pause set holds pauses up to 700 ms inside a sentence.
    for hangovers in HANGOVERS.values():
        assert hangovers.complete_ms < 400 <= 700 <= hangovers.incomplete_ms


@pytest.mark.parametrize("text", ["Hi.", "Hello.", "Hi there.", "Good morning.", "Hey"])
def test_a_greeting_alone_waits_for_the_callers_reason(text: str) -> None:
    """"Hi, I have a terrible toothache.": Whisper writes the pause after "Hi," as a full
    stop; answered there, the agent talks over the caller's reason."""
    assert judge(text) is Verdict.INCOMPLETE
