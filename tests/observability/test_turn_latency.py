"""One answer's latency split into parts that add up to it."""

from __future__ import annotations

import pytest

from agentplatform.observability.turn_latency import split, total


def test_a_speech_model_s_wait_is_one_model_part_after_the_end_of_turn_wait():
    parts = split(waited_ms=500, model_ms=700, sent_after_ms=12, tool_ms=200)
    assert parts == {"end_of_turn": 500, "model": 500, "tools": 200, "other": 12}
    assert total(parts) == 1212


def test_a_cascade_is_split_into_its_own_steps_and_nothing_is_called_model():
    parts = split(waited_ms=400, model_ms=620, sent_after_ms=5, tool_ms=0,
                  cascade={"vad_hangover_ms": 400, "stt_ms": 150, "llm_first_token_ms": 300,
                           "tts_first_audio_ms": 100, "turn_ms": 950})
    assert "model" not in parts
    assert parts["stt"] == 150 and parts["llm"] == 300 and parts["tts"] == 100
    assert parts["other"] == pytest.approx(75)  # 70 ms not in the cascade's split, 5 sending
    assert total(parts) == pytest.approx(400 + 620 + 5)


def test_a_cascade_split_longer_than_our_clock_is_fitted_to_it():
    parts = split(waited_ms=0, model_ms=500, sent_after_ms=0, tool_ms=0,
                  cascade={"stt_ms": 300, "llm_first_token_ms": 300, "tts_first_audio_ms": 400})
    assert total(parts) == pytest.approx(500, abs=0.2)
