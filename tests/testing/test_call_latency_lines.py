"""``agentplatform call`` prints each turn's latency as the call record has it (the
figure the call page and events show), not what the caller timed on its side."""

from __future__ import annotations

from agentplatform.testing.call_runner import latency_lines


def test_the_record_s_figure_and_parts_are_printed_not_the_caller_s():
    detail = {"turns": [
        {"role": "assistant", "latency_ms": None},  # the greeting
        {"role": "user", "latency_ms": None},
        {"role": "assistant", "latency_ms": 1107.0,
         "latency_parts": {"end_of_turn": 500, "model": 590, "other": 17}},
    ]}
    lines = latency_lines(detail, heard=[1250.0])
    assert lines == [("  turn 1: 1,107 ms caller stopped → first answer audio on the line "
                      "(end-of-turn wait 500, model first audio 590, bridge and line 17)")]


def test_without_a_record_the_caller_s_timing_is_printed_and_said_to_be_that():
    lines = latency_lines(None, heard=[1250.0])
    assert lines == [("  turn 1: 1,250 ms from the caller's last word to the answer heard "
                      "(measured by the caller: no call record to read)")]
