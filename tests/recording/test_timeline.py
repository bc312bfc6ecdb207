"""Where the recording puts each byte: the caller on the inbound frame clock, the agent
where it played (marks), cut at a barge-in, silence where nobody spoke."""

from __future__ import annotations

import audioop

from agentplatform.recording.timeline import Timeline

MS = 8  # samples per ms


def _audio(value: int, ms: int) -> bytes:
    """Distinctive μ-law (never the silence codes 0xFF/0x7F) of ``ms`` length."""
    assert value not in (0xFF, 0x7F)
    return bytes([value]) * (ms * MS)


def _tracks(stereo: bytes) -> tuple[bytes, bytes]:
    """The left and right tracks of stereo PCM16, back as μ-law bytes."""
    left = audioop.lin2ulaw(audioop.tomono(stereo, 2, 1, 0), 2)
    right = audioop.lin2ulaw(audioop.tomono(stereo, 2, 0, 1), 2)
    return left, right


def _runs(track: bytes) -> list[tuple[int, int, int]]:
    """(value, start ms, length ms) of every stretch of non-silence."""
    runs: list[tuple[int, int, int]] = []
    i = 0
    while i < len(track):
        if track[i] == 0xFF:
            i += 1
            continue
        j = i
        while j < len(track) and track[j] == track[i]:
            j += 1
        runs.append((track[i], i // MS, (j - i) // MS))
        i = j
    return runs


def test_caller_frames_sit_on_their_timestamps_with_gaps_as_silence_and_repeats_dropped():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 20))
    timeline.caller(20 * MS, _audio(0x11, 20))
    timeline.caller(20 * MS, _audio(0x55, 20))  # a repeat of the frame at 20 ms
    timeline.caller(100 * MS, _audio(0x12, 20))  # 60 ms lost on the way
    left, right = _tracks(timeline.take_all())
    assert _runs(left) == [(0x10, 0, 20), (0x11, 20, 20), (0x12, 100, 20)]
    assert len(left) == 120 * MS and _runs(right) == []


def test_agent_audio_is_placed_where_its_mark_says_it_finished_playing():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 1000))
    timeline.agent_sent("m1", "item", _audio(0x20, 300), sent_at=100 * MS)
    timeline.agent_played("m1", now=700 * MS)  # played 400..700 (it queued behind nothing)
    timeline.caller(1000 * MS, _audio(0x10, 500))
    _, right = _tracks(timeline.take_all())
    assert _runs(right) == [(0x20, 400, 300)]


def test_back_to_back_chunks_stay_back_to_back_despite_echo_jitter():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 2000))
    for n, value in enumerate((0x20, 0x21, 0x22)):
        timeline.agent_sent(f"m{n}", "item", _audio(value, 100), sent_at=0)
    timeline.agent_played("m0", now=600 * MS)
    timeline.agent_played("m1", now=712 * MS)  # echoes 12 ms and 5 ms late
    timeline.agent_played("m2", now=805 * MS)
    _, right = _tracks(timeline.take_all())
    assert _runs(right) == [(0x20, 500, 100), (0x21, 600, 100), (0x22, 700, 100)]


def test_a_late_chunk_leaves_the_silence_the_caller_heard():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 3000))
    timeline.agent_sent("m0", "item", _audio(0x20, 100), sent_at=0)
    timeline.agent_played("m0", now=600 * MS)
    timeline.agent_sent("m1", "item", _audio(0x21, 100), sent_at=900 * MS)  # the model lagged
    timeline.agent_played("m1", now=1000 * MS)
    _, right = _tracks(timeline.take_all())
    assert _runs(right) == [(0x20, 500, 100), (0x21, 900, 100)]


def test_a_barge_in_cuts_the_agent_exactly_where_the_caller_stopped_hearing_it():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 3000))
    timeline.agent_sent("m0", "item", _audio(0x20, 200), sent_at=0)
    timeline.agent_sent("m1", "item", _audio(0x21, 800), sent_at=0)
    timeline.agent_sent("m2", "item", _audio(0x22, 500), sent_at=0)
    timeline.agent_played("m0", now=400 * MS)  # 200..400
    timeline.agent_cut("item", heard=550 * MS, now=750 * MS)  # 350 ms of m1 heard
    timeline.agent_played("m1", now=760 * MS)  # the carrier hands back dropped marks
    timeline.agent_played("m2", now=760 * MS)
    _, right = _tracks(timeline.take_all())
    assert _runs(right) == [(0x20, 200, 200), (0x21, 400, 350)]


def test_audio_sent_but_never_played_is_not_in_the_recording():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 1000))
    timeline.agent_sent("m0", "item", _audio(0x20, 500), sent_at=900 * MS)
    _, right = _tracks(timeline.take_all())  # the call ended before the mark came back
    assert _runs(right) == []


def test_nothing_is_written_past_where_waiting_agent_audio_could_still_land():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 1000))
    timeline.agent_sent("m0", "item", _audio(0x20, 300), sent_at=1000 * MS)
    early = timeline.take()
    assert len(early) // 4 == 700 * MS  # the chunk may start as early as 700 ms
    timeline.caller(1000 * MS, _audio(0x10, 300))
    timeline.agent_played("m0", now=1300 * MS)
    late = timeline.take()
    _, right = _tracks(early + late)
    assert _runs(right) == [(0x20, 1000, 300)]


def test_item_starts_say_where_each_answer_begins():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 3000))
    timeline.agent_sent("a", "first", _audio(0x20, 100), sent_at=0)
    timeline.agent_sent("b", "second", _audio(0x21, 100), sent_at=0)
    timeline.agent_played("b", now=1200 * MS)
    assert timeline.item_starts == {"first": 1000 * MS, "second": 1100 * MS}


def test_one_late_echo_from_a_busy_moment_does_not_break_the_agents_speech():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 2000))
    for n, value in enumerate((0x20, 0x21, 0x22)):
        timeline.agent_sent(f"m{n}", "item", _audio(value, 100), sent_at=0)
    timeline.agent_played("m0", now=600 * MS)
    timeline.agent_played("m1", now=780 * MS)  # handled 80 ms late, with the next one
    timeline.agent_played("m2", now=781 * MS)
    _, right = _tracks(timeline.take_all())
    assert _runs(right) == [(0x20, 500, 100), (0x21, 600, 100), (0x22, 700, 100)]


def test_echoes_late_again_and_again_mean_the_line_stalled_and_move_the_audio():
    timeline = Timeline()
    timeline.caller(0, _audio(0x10, 2000))
    for n, value in enumerate((0x20, 0x21, 0x22)):
        timeline.agent_sent(f"m{n}", "item", _audio(value, 100), sent_at=0)
    timeline.agent_played("m0", now=600 * MS)
    timeline.agent_played("m1", now=780 * MS)  # the carrier stalled 80 ms...
    timeline.agent_played("m2", now=880 * MS)  # ...as the next echo confirms
    _, right = _tracks(timeline.take_all())
    assert _runs(right) == [(0x20, 500, 100), (0x21, 600, 100), (0x22, 780, 100)]
