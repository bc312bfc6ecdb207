"""What the caller heard: marks, stale marks after a clear, and the clamp to what was sent."""

from agentplatform.bridge.playback import PlaybackTracker


def test_mark_names_carry_generation_item_and_sent_end():
    tracker = PlaybackTracker()
    assert tracker.sent("item1", 100.0, now=0.0) == "0:item1:100"
    assert tracker.sent("item1", 50.0, now=0.01) == "0:item1:150"


def test_echoed_mark_moves_played_position():
    tracker = PlaybackTracker()
    name = tracker.sent("a", 200.0, now=0.0)
    tracker.sent("a", 200.0, now=0.0)
    tracker.mark_played(name, now=0.2)
    assert tracker.items["a"].played_ms == 200.0
    # 100 ms after the echo, playback has moved on about 100 ms.
    assert tracker.heard_ms("a", now=0.3) == 300


def test_heard_estimate_never_exceeds_audio_sent():
    tracker = PlaybackTracker()
    tracker.sent("a", 120.0, now=0.0)
    # Ten seconds later the estimate by elapsed time would be 10 000 ms; only 120 were sent.
    assert tracker.heard_ms("a", now=10.0) == 120


def test_heard_is_zero_before_playback_of_queued_item_starts():
    tracker = PlaybackTracker()
    tracker.sent("first", 1000.0, now=0.0)
    tracker.sent("second", 500.0, now=0.0)
    # "second" starts playing only when "first" has played (at t=1.0 s).
    assert tracker.heard_ms("second", now=0.5) == 0
    assert tracker.heard_ms("second", now=1.2) == 200


def test_marks_from_before_a_clear_are_stale_and_ignored():
    tracker = PlaybackTracker()
    old = tracker.sent("a", 100.0, now=0.0)
    tracker.cleared()
    assert tracker.mark_played(old, now=0.1) is None
    assert tracker.stale_marks == 1
    new = tracker.sent("b", 100.0, now=0.2)
    assert new.startswith("1:b:")
    assert tracker.mark_played(new, now=0.3) is not None


def test_malformed_mark_name_is_counted_not_raised():
    tracker = PlaybackTracker()
    assert tracker.mark_played("responsePart", now=0.0) is None
    assert tracker.stale_marks == 1


def test_playing_until_last_mark_echoes():
    tracker = PlaybackTracker()
    name = tracker.sent("a", 100.0, now=0.0)
    assert tracker.playing(now=0.05)
    assert not tracker.all_played()
    tracker.mark_played(name, now=0.1)
    assert tracker.all_played()
    assert not tracker.playing(now=0.1)


def test_a_mark_claiming_more_than_was_sent_is_held_to_what_was_sent():
    # Found by the carrier fuzzer: an echoed "0:a:1001" for 1000 ms sent made the
    # bridge truncate the model's answer at 1001 ms, past its end.
    tracker = PlaybackTracker()
    tracker.sent("a", 1000.0, now=0.0)
    tracker.mark_played("0:a:1001", now=0.1)
    assert tracker.heard_ms("a", now=0.1) == 1000


def test_a_mark_with_a_non_finite_or_negative_position_is_ignored():
    # Found by the carrier fuzzer: "0:a:inf" made heard_ms raise OverflowError,
    # which ended the call as a provider error at the next barge-in.
    tracker = PlaybackTracker()
    tracker.sent("a", 1000.0, now=0.0)
    for name in ("0:a:inf", "0:a:INF", "0:a:-inf", "0:a:nan", "0:a:1e400", "0:a:-5"):
        assert tracker.mark_played(name, now=0.0) is None
    assert tracker.stale_marks == 6
    assert tracker.heard_ms("a", now=0.0) == 0
