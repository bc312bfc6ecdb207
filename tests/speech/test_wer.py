"""Word error rate as the recognition table computes it."""

from __future__ import annotations

import numpy as np
import pytest

from agentplatform.speech.phone_line import LINE_RATE, phone_line, speech_power
from agentplatform.speech.wer import normalize, word_error_rate


def test_case_punctuation_digits_and_contractions_are_not_errors() -> None:
    assert normalize("What's your address? It's 12, I'd say.") == [
        "what", "is", "your", "address", "it", "is", "twelve", "i", "would", "say"]
    assert word_error_rate([("i need a check up", "I need a checkup.")]) == 0.0


def test_substitutions_deletions_and_insertions_each_count_once() -> None:
    assert word_error_rate([("what are your opening hours",
                             "what are you opening out")]) == pytest.approx(2 / 5)
    assert word_error_rate([("do you have parking", "you have parking")]) == pytest.approx(1 / 4)
    assert word_error_rate([("thank you", "thank you very much")]) == pytest.approx(2 / 2)


def test_the_rate_is_over_all_reference_words_not_an_average_of_utterances() -> None:
    pairs = [("one two three four", "one two three four"), ("five", "six")]
    assert word_error_rate(pairs) == pytest.approx(1 / 5)


def test_the_phone_line_adds_hiss_at_the_asked_snr_and_returns_8k() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    line = phone_line(tone, rate, snr_db=20.0, seed=3)
    assert len(line) == 2 * LINE_RATE
    heard = np.frombuffer(line, dtype="<i2").astype(np.float64)
    clean = np.frombuffer(phone_line(tone, rate, snr_db=200.0), dtype="<i2").astype(np.float64)
    snr = 10 * np.log10(speech_power(clean, LINE_RATE) / np.mean((heard - clean) ** 2))
    assert 18.0 < snr < 22.0
