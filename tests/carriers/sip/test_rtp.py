import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentplatform.carriers.sip.rtp import (
    FRAME_BYTES,
    DtmfDetector,
    FrameAssembler,
    MalformedRtp,
    ReorderBuffer,
    RtpMalformedKind,
    RtpPacket,
    RtpSender,
    build_rtp,
    looks_like_rtcp,
    parse_rtp,
    parse_telephone_event,
)


def _raw(first: int = 0x80, second: int = 0, seq: int = 1, ts: int = 2, ssrc: int = 3, rest: bytes = b"") -> bytes:
    """An RTP datagram written out by hand, independent of build_rtp."""
    return struct.pack("!BBHII", first, second, seq, ts, ssrc) + rest


# ----------------------------------------------------------------- packets


def test_a_built_packet_parses_back_to_its_fields():
    data = build_rtp(payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF, payload=b"\x01\x02", marker=True)
    assert data[:2] == b"\x80\x88"
    assert parse_rtp(data) == RtpPacket(8, 65535, 2**32 - 1, 0xDEADBEEF, b"\x01\x02", marker=True)


def test_csrcs_extension_and_padding_are_read_and_stripped_from_the_payload():
    csrcs = struct.pack("!II", 11, 22)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\xaa\xbb\xcc\xdd"
    padding = b"\x00\x00\x03"
    data = _raw(first=0x80 | 0x20 | 0x10 | 2, second=0, rest=csrcs + extension + b"audio" + padding)
    packet = parse_rtp(data)
    assert packet.csrcs == (11, 22)
    assert packet.extension == (0xBEDE, b"\xaa\xbb\xcc\xdd")
    assert packet.payload == b"audio"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", RtpMalformedKind.TOO_SHORT),
        (_raw()[:11], RtpMalformedKind.TOO_SHORT),
        (_raw(first=0x40), RtpMalformedKind.BAD_VERSION),
        (_raw(first=0x80 | 3, rest=b"\x00" * 8), RtpMalformedKind.TOO_SHORT),  # 3 CSRCs, room for 2
        (_raw(first=0x90, rest=b"\x00\x00"), RtpMalformedKind.TOO_SHORT),  # extension header cut
        (_raw(first=0x90, rest=struct.pack("!HH", 1, 5) + b"\x00" * 8), RtpMalformedKind.TOO_SHORT),
        (_raw(first=0xA0, rest=b"ab\x00"), RtpMalformedKind.BAD_PADDING),  # padding count 0
        (_raw(first=0xA0, rest=b"ab\x09"), RtpMalformedKind.BAD_PADDING),  # more padding than payload
        (_raw(rest=b"\xff" * 4000), RtpMalformedKind.OVERSIZE),
    ],
)
def test_malformed_packets_are_refused_by_kind(data, kind):
    with pytest.raises(MalformedRtp) as caught:
        parse_rtp(data)
    assert caught.value.kind == kind


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_parse_or_raise_only_the_malformed_error(data):
    try:
        packet = parse_rtp(data)
    except MalformedRtp as exc:
        assert isinstance(exc.kind, RtpMalformedKind)
    else:
        assert len(packet.payload) <= len(data) - 12


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=12, max_size=12),
    st.integers(0, 15),
    st.booleans(),
    st.integers(0, 8),
    st.binary(max_size=300),
)
def test_random_headers_with_consistent_lengths_parse(header, csrc_count, has_extension, ext_words, payload):
    first = 0x80 | csrc_count | (0x10 if has_extension else 0)
    data = bytes([first]) + header[1:] + b"\x01" * (4 * csrc_count)
    if has_extension:
        data += struct.pack("!HH", 7, ext_words) + b"\x02" * (4 * ext_words)
    packet = parse_rtp(data + payload)
    assert packet.payload == payload
    assert len(packet.csrcs) == csrc_count


def test_rtcp_sharing_the_rtp_port_is_recognised():
    assert looks_like_rtcp(bytes([0x81, 200]) + b"\x00" * 26)  # sender report
    assert looks_like_rtcp(bytes([0x81, 201]) + b"\x00" * 6)  # receiver report
    assert not looks_like_rtcp(build_rtp(payload_type=0, sequence=1, timestamp=1, ssrc=1, payload=b"x"))
    assert not looks_like_rtcp(build_rtp(payload_type=8, sequence=1, timestamp=1, ssrc=1, payload=b"x", marker=True))


def test_the_sender_counts_sequence_and_timestamp_and_marks_only_the_first_packet():
    sender = RtpSender(0, ssrc=5, sequence=65535, timestamp=2**32 - 160)
    packets = [parse_rtp(sender.next_packet(b"\xff" * 160)) for _ in range(3)]
    assert [p.sequence for p in packets] == [65535, 0, 1]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160]
    assert [p.marker for p in packets] == [True, False, False]
    sender.skip(5)
    after = parse_rtp(sender.next_packet(b"\xff" * 160))
    assert (after.sequence, after.timestamp) == (2, 320 + 5 * 160)


def test_two_senders_start_from_different_random_numbers():
    a, b = RtpSender(0), RtpSender(0)
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)


# -------------------------------------------------------------------- DTMF


def _event(digit: int, *, ts: int, end: bool, duration: int = 800, seq: int = 1) -> RtpPacket:
    payload = struct.pack("!BBH", digit, (0x80 if end else 0) | 10, duration)
    return RtpPacket(101, seq, ts, 9, payload)


def test_a_telephone_event_payload_is_read():
    assert parse_telephone_event(b"\x05\x8a\x03\x20").event == 5
    assert parse_telephone_event(b"\x05\x8a\x03\x20").end is True
    assert parse_telephone_event(b"\x05\x8a\x03\x20").duration == 800
    for bad in (b"", b"\x05\x8a\x03"):
        with pytest.raises(MalformedRtp) as caught:
            parse_telephone_event(bad)
        assert caught.value.kind == RtpMalformedKind.BAD_DTMF


def test_three_end_packets_make_one_digit_and_a_new_timestamp_another():
    detector = DtmfDetector()
    seen = []
    for packet in [
        _event(1, ts=1000, end=False, duration=160),
        _event(1, ts=1000, end=False, duration=320),
        _event(1, ts=1000, end=True),
        _event(1, ts=1000, end=True),
        _event(1, ts=1000, end=True),
        _event(1, ts=5000, end=True),  # the same key again: a new press
        _event(1, ts=5000, end=True),
        _event(11, ts=9000, end=True),
    ]:
        seen += detector.feed(packet)
    assert seen == ["1", "1", "#"]


def test_a_press_whose_end_packets_were_all_lost_is_reported_when_the_next_begins():
    detector = DtmfDetector()
    assert detector.feed(_event(7, ts=100, end=False)) == []
    assert detector.feed(_event(3, ts=900, end=False)) == ["7"]
    assert detector.feed(_event(3, ts=900, end=True)) == ["3"]


def test_events_that_are_not_keys_give_no_digit():
    detector = DtmfDetector()
    assert detector.feed(_event(16, ts=1, end=True)) == []  # flash
    assert detector.feed(_event(12, ts=2, end=True)) == ["A"]


# ---------------------------------------------------------- reorder buffer


def test_packets_in_order_are_released_at_once():
    buffer = ReorderBuffer(0.06)
    assert [buffer.push(s, s, now=0.0) for s in (10, 11, 12)] == [[10], [11], [12]]


def test_a_packet_out_of_order_is_waited_for_and_then_released_in_order():
    buffer = ReorderBuffer(0.06)
    assert buffer.push(1, "a", now=0.0) == ["a"]
    assert buffer.push(3, "c", now=0.02) == []
    assert buffer.push(2, "b", now=0.03) == ["b", "c"]
    assert buffer.lost == 0


def test_a_duplicate_is_dropped_and_counted():
    buffer = ReorderBuffer(0.06)
    buffer.push(1, "a", now=0.0)
    buffer.push(3, "c", now=0.0)
    assert buffer.push(3, "c", now=0.01) == []
    assert buffer.push(1, "a", now=0.01) == []
    assert (buffer.duplicates, buffer.late) == (1, 1)


def test_a_gap_is_given_up_after_the_depth_and_counted_lost():
    buffer = ReorderBuffer(0.06)
    buffer.push(1, "a", now=0.0)
    assert buffer.push(4, "d", now=0.02) == []
    assert buffer.pop_ready(now=0.05) == []
    assert buffer.pop_ready(now=0.081) == ["d"]
    assert buffer.lost == 2
    assert buffer.push(2, "b", now=0.1) == []  # too late now
    assert buffer.late == 1


def test_sequence_numbers_wrap_at_65535():
    buffer = ReorderBuffer(0.06)
    assert buffer.push(65534, "a", now=0.0) == ["a"]
    assert buffer.push(0, "c", now=0.0) == []
    assert buffer.push(65535, "b", now=0.0) == ["b", "c"]
    assert buffer.push(2, "e", now=0.0) == []
    assert buffer.push(1, "d", now=0.0) == ["d", "e"]
    assert buffer.lost == 0


def test_a_jump_far_ahead_restarts_the_sequence():
    buffer = ReorderBuffer(0.06)
    buffer.push(100, "a", now=0.0)
    assert buffer.push(30000, "b", now=0.0) == ["b"]
    assert buffer.push(30001, "c", now=0.0) == ["c"]
    assert buffer.restarts == 1


def test_two_packets_in_a_row_far_behind_mean_the_sender_restarted_its_numbering():
    buffer = ReorderBuffer(0.06)
    buffer.push(5000, "a", now=0.0)
    assert buffer.push(200, "x", now=0.0) == []  # one stray: late
    assert buffer.push(201, "y", now=0.0) == ["y"]
    assert buffer.push(202, "z", now=0.0) == ["z"]


def test_the_buffer_never_holds_more_than_its_bound():
    buffer = ReorderBuffer(10.0)
    buffer.push(0, 0, now=0.0)
    released = []
    for seq in range(2, 2 + ReorderBuffer.MAX_HELD):
        released += buffer.push(seq, seq, now=0.0)
    assert released[0] == 2  # the hole at 1 was given up once the bound was hit


# ---------------------------------------------------------- frame assembly


def test_thirty_ms_packets_are_cut_into_twenty_ms_frames():
    assembler = FrameAssembler()
    audio = bytes(range(240)) * 2
    frames = assembler.add(0, audio[:240]) + assembler.add(240, audio[240:])
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3
    assert b"".join(frames) == audio


def test_a_gap_in_the_timeline_is_filled_with_silence():
    assembler = FrameAssembler()
    frames = assembler.add(1000, b"\x01" * 160) + assembler.add(1320, b"\x02" * 160)
    assert frames == [b"\x01" * 160, b"\xff" * 160, b"\x02" * 160]
    assert assembler.silence_filled == 160


def test_overlapping_audio_is_trimmed_and_repeated_audio_dropped():
    assembler = FrameAssembler()
    assembler.add(0, b"\x01" * 160)
    assert assembler.add(80, b"\x02" * 160) == []  # the first 80 samples overlap
    assert assembler.add(0, b"\x03" * 160) == []  # wholly before what we have
    assert assembler.add(240, b"\x04" * 80) == [b"\x02" * 80 + b"\x04" * 80]


def test_a_huge_timestamp_jump_is_not_filled_with_silence():
    assembler = FrameAssembler(max_gap_s=1.0)
    assembler.add(0, b"\x01" * 160)
    assert assembler.add(2**31, b"\x02" * 160) == [b"\x02" * 160]
    assert assembler.silence_filled == 0


def test_the_timeline_wraps_at_two_to_the_32():
    assembler = FrameAssembler()
    frames = assembler.add(2**32 - 80, b"\x01" * 160) + assembler.add(80, b"\x02" * 160)
    assert frames == [b"\x01" * 160, b"\x02" * 160]
