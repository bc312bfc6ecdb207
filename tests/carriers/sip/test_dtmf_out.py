"""RFC 4733 DTMF we send: the tick plan, and the packets an RtpSession puts on a real socket.

The packets are read with plain ``struct`` (see ``test_media``), so the checks do not
share the sender's reading of RFC 4733.
"""

from __future__ import annotations

import struct

import pytest

from agentplatform.carriers.dtmf import BadDtmf, validate_dtmf
from agentplatform.carriers.sip.dtmf_out import plan_ticks
from agentplatform.errors import CarrierError
from tests.carriers.sip.test_media import open_session, peer  # noqa: F401 - fixture

KEYS = "0123456789*#ABCD"


def event(payload: bytes) -> tuple[str, bool, int, int]:
    code, flags, duration = struct.unpack("!BBH", payload)
    return KEYS[code], bool(flags & 0x80), flags & 0x3F, duration


@pytest.mark.parametrize(("digits", "expected"), [("12#", "12#"), ("a b*w9", "AB*w9"), ("W0", "w0")])
def test_valid_digit_strings_are_made_canonical(digits, expected):
    assert validate_dtmf(digits) == expected


@pytest.mark.parametrize("digits", ["", "12x", "1" * 65, "+1"])
def test_bad_digit_strings_are_refused_naming_the_fault(digits):
    with pytest.raises(BadDtmf):
        validate_dtmf(digits)


def test_one_key_is_growing_packets_then_three_end_packets():
    ticks = plan_ticks("5")
    events = [event(t.payload) for t in ticks if t is not None]
    assert [e[0] for e in events] == ["5"] * 8
    assert [e[3] for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e[1] for e in events] == [False] * 5 + [True] * 3
    assert [t.first for t in ticks] == [True] + [False] * 7
    assert ticks[-1] is not None  # nothing trails the last key


def test_a_pause_is_half_a_second_of_ordinary_ticks_between_keys():
    ticks = plan_ticks("1w2")
    gap = ticks.index(None, 0)
    second = next(i for i, t in enumerate(ticks) if t is not None and t.first and i > 0)
    assert second - gap == 3 + 25  # the inter-key gap plus 500 ms


async def test_session_sends_each_key_with_one_timestamp_and_continues_the_audio_clock(peer):  # noqa: F811
    session = await open_session(peer.address, dtmf=96)
    try:
        session.play(b"\x10" * 160 * 4)
        await session.send_dtmf("19")
        await peer.wait_for(len(peer.received) + 3)
    finally:
        await session.close()
    packets = [struct.unpack_from("!BBHII", data) + (data[12:],) for _, data in peer.received]
    sequences = [p[2] for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(sequences, sequences[1:], strict=False))
    dtmf = [p for p in packets if p[1] & 0x7F == 96]
    assert len(dtmf) == 16
    for press in (dtmf[:8], dtmf[8:]):
        assert len({p[3] for p in press}) == 1  # every packet of a key: the key's start timestamp
        assert press[0][1] & 0x80 and not any(p[1] & 0x80 for p in press[1:])  # marker on the first
        assert [event(p[5])[1] for p in press] == [False] * 5 + [True] * 3
    assert [event(p[5])[0] for p in dtmf] == ["1"] * 8 + ["9"] * 8
    after = packets.index(dtmf[-1]) + 1
    first_key_at = packets.index(dtmf[0])
    # The audio after the keys is stamped as if a frame had gone out at every tick.
    assert packets[after][3] - packets[first_key_at][3] == 160 * (after - first_key_at)
    # The queued speech was not lost: all four frames went out, none during a key.
    speech = [i for i, p in enumerate(packets) if p[1] & 0x7F == 0 and p[5] == b"\x10" * 160]
    assert len(speech) == 4


async def test_no_telephone_event_means_the_carrier_cannot_send_dtmf(peer):  # noqa: F811
    session = await open_session(peer.address, dtmf=None)
    try:
        with pytest.raises(CarrierError, match="telephone-event"):
            await session.send_dtmf("1")
    finally:
        await session.close()
