import pytest

from agentplatform.carriers.sip.playout import PlayoutBuffer


def test_a_mark_is_played_with_the_frame_that_sends_past_it():
    buffer = PlayoutBuffer(limit_bytes=8000)
    buffer.play(b"\x01" * 320)
    assert buffer.mark("m") == []
    assert buffer.take_frame() == (b"\x01" * 160, [])
    assert buffer.take_frame() == (b"\x01" * 160, ["m"])
    assert buffer.take_frame() == (None, [])


def test_a_mark_with_nothing_queued_ahead_is_played_at_once():
    assert PlayoutBuffer(limit_bytes=8000).mark("now") == ["now"]


def test_a_short_tail_is_padded_with_silence_and_its_mark_played():
    buffer = PlayoutBuffer(limit_bytes=8000)
    buffer.play(b"\x01" * 200)
    buffer.mark("end")
    buffer.take_frame()
    frame, marks = buffer.take_frame()
    assert frame == b"\x01" * 40 + b"\xff" * 120
    assert marks == ["end"]
    assert buffer.sent_bytes == 200


def test_clear_drops_queued_audio_and_returns_the_pending_marks():
    buffer = PlayoutBuffer(limit_bytes=8000)
    buffer.play(b"\x01" * 160)
    buffer.mark("a")
    buffer.play(b"\x02" * 160)
    buffer.mark("b")
    buffer.take_frame()
    assert buffer.clear() == ["b"]
    assert buffer.take_frame() == (None, [])
    assert (buffer.sent_bytes, buffer.cleared_bytes) == (160, 160)
    buffer.play(b"\x03" * 160)  # positions after a clear still line up
    buffer.mark("c")
    assert buffer.take_frame() == (b"\x03" * 160, ["c"])


def test_audio_over_the_limit_is_dropped_and_counted():
    buffer = PlayoutBuffer(limit_bytes=400)
    buffer.play(b"\x01" * 300)
    buffer.play(b"\x02" * 300)
    assert (buffer.queued_bytes, buffer.dropped_bytes) == (400, 200)


def test_a_limit_below_one_frame_is_refused():
    with pytest.raises(ValueError, match="below one frame"):
        PlayoutBuffer(limit_bytes=100)
