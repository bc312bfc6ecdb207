"""The bench's load generator measures from outside: its audio tags survive the
bridge's transcoding, frames are paired in order (dropped ones skipped), a barge-in
without a clear is counted, and a level whose load lagged is not reported."""

from __future__ import annotations

import audioop
from array import array

from agentplatform import bench_bridge
from agentplatform.audio.resample import make_resampler
from agentplatform.bench_load import (
    LOUD_CODES,
    QUIET_CODES,
    Stream,
    barge_latencies,
    code_of_sample,
    match,
)


def _mid_sample(pcm: bytes, frame_samples: int) -> list[int]:
    samples = array("h", pcm)
    return [samples[i + frame_samples // 2] for i in range(0, len(samples), frame_samples)]


def test_every_tag_survives_the_bridges_resampling_both_ways() -> None:
    up, down = make_resampler(8000, 24000), make_resampler(24000, 8000)
    codes = QUIET_CODES + LOUD_CODES
    heard_in = [code_of_sample(s) for c in codes
                for s in _mid_sample(up.process(audioop.ulaw2lin(bytes([c]) * 160, 2)), 480)]
    assert heard_in == list(codes)
    heard_out = []
    for c in codes:
        level = audioop.ulaw2lin(bytes([c]), 2) * 480
        heard_out.append(audioop.lin2ulaw(down.process(level), 2)[80])
    assert heard_out == list(codes)


def test_quiet_tags_stay_under_the_speech_gate_and_loud_ones_over_it() -> None:
    assert max(abs(int.from_bytes(audioop.ulaw2lin(bytes([c]), 2), "little", signed=True))
               for c in QUIET_CODES) < 200
    assert min(abs(int.from_bytes(audioop.ulaw2lin(bytes([c]), 2), "little", signed=True))
               for c in LOUD_CODES) > 1500


def _stream(pairs: list[tuple[float, int]]) -> Stream:
    s = Stream()
    for t, code in pairs:
        s.add(t, code)
    return s


def test_frames_pair_in_order_and_a_dropped_frame_is_skipped() -> None:
    sent = _stream([(0.00, 1), (0.02, 2), (0.04, 3), (0.06, 1)])
    heard = _stream([(0.001, 1), (0.045, 3), (0.063, 1)])  # frame 2 was dropped
    assert [round(ms, 3) for ms in match(sent, heard, 0.0, 1.0)] == [1.0, 5.0, 3.0]


def test_only_frames_sent_inside_the_window_are_counted() -> None:
    sent = _stream([(0.00, 1), (0.02, 2)])
    heard = _stream([(0.001, 1), (0.021, 2)])
    assert [round(ms, 3) for ms in match(sent, heard, 0.01, 1.0)] == [1.0]


def test_a_speech_start_answered_by_no_clear_is_counted() -> None:
    started = array("d", [1.0, 3.0])
    clears = array("d", [1.002])
    latencies, missing = barge_latencies(started, clears, 0.0, 10.0)
    assert [round(ms, 3) for ms in latencies] == [2.0]
    assert missing == 1


def _row(server: str, lag: float, p99: float = 1.0) -> dict[str, object]:
    figures = {"n": 10, "p50": 0.5, "p99": p99}
    return {"server": server, "calls": 100, "admitted": 100, "refused_busy": 0, "failed": 0,
            "cpu_percent": 40.0, "cpu_ms_per_call_second": 4.0, "mb_per_call": 0.2,
            "in_ms": figures, "out_ms": figures, "barge_ms": figures,
            "barge_ins_without_clear": 0, "truncates": 5, "truncates_rejected": 0,
            "load_lag_p99_ms": lag, "load_lagged": lag > bench_bridge.MAX_LOAD_LAG_MS}


def test_a_level_whose_load_lagged_is_not_reported() -> None:
    printed = bench_bridge.table([_row("relay", 0.3), _row("bridge", 5.0)])
    relay_line, bridge_line = printed.splitlines()[1:]
    assert "4.0" in relay_line
    assert "not reported" in bridge_line and "4.0" not in bridge_line


def test_capacity_is_the_most_calls_that_met_the_targets_with_the_load_keeping_up() -> None:
    rows = [_row("bridge", 0.3), {**_row("bridge", 0.3, p99=9.0), "calls": 200},
            {**_row("bridge", 9.0), "calls": 400}]
    assert bench_bridge.capacity(rows) == 100
