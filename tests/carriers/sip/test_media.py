"""RtpSession over real UDP sockets on 127.0.0.1.

The peer builds its packets with plain ``struct`` (not ``rtp.build_rtp``) so a
shared misreading of the header cannot pass both sides.
"""

import asyncio
import struct
import time
from dataclasses import dataclass

import pytest

from agentplatform.audio.codecs import ulaw_to_alaw
from agentplatform.carriers.base import Dtmf, InboundAudio, MarkPlayed
from agentplatform.carriers.sip.media import NoRtpPort, RtpSession

PORTS = range(31000, 31400)


@dataclass
class Codec:
    payload_type: int
    name: str


PCMU = Codec(0, "PCMU")
PCMA = Codec(8, "PCMA")


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def unpack(data: bytes) -> tuple[bool, int, int, int, int, bytes]:
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    assert first == 0x80
    return bool(second & 0x80), second & 0x7F, seq, ts, ssrc, data[12:]


class Peer(asyncio.DatagramProtocol):
    """The caller's media socket: records what arrives, sends what it is told."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))
        self.arrived.set()

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, ("127.0.0.1", port))

    def packets(self) -> list[tuple[bool, int, int, int, int, bytes]]:
        return [unpack(data) for _, data in self.received]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def open_peer() -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    return peer


@pytest.fixture
async def peer():
    p = await open_peer()
    yield p
    p.transport.close()


async def open_session(remote, *, codec=PCMU, dtmf=101, timeout_s=30.0, **tuning) -> RtpSession:
    return await RtpSession.open(
        bind_host="127.0.0.1", ports=PORTS, codec=codec, dtmf_payload_type=dtmf, remote=remote, timeout_s=timeout_s, **tuning
    )


async def next_events(session: RtpSession, count: int, kinds=(InboundAudio, Dtmf, MarkPlayed), timeout: float = 5.0) -> list:
    got = []
    async with asyncio.timeout(timeout):
        async for event in session.events():
            if isinstance(event, kinds):
                got.append(event)
                if len(got) == count:
                    return got
    return got


async def test_packets_go_out_every_20_ms_with_continuous_sequence_and_timestamp(peer):
    loop = asyncio.get_running_loop()
    session = await open_session(peer.address)
    try:
        await peer.wait_for(1)
        start = loop.time()
        first = len(peer.received)
        await asyncio.sleep(2.0)
        elapsed = loop.time() - start
        count = len(peer.received) - first
    finally:
        await session.close()
    packets = peer.packets()
    assert [p[0] for p in packets] == [True] + [False] * (len(packets) - 1)  # marker on the first only
    assert {p[4] for p in packets} == {packets[0][4]}
    for before, after in zip(packets, packets[1:], strict=False):
        assert after[2] == (before[2] + 1) % 65536
        assert after[3] == (before[3] + 160) % 2**32
    assert all(p[1] == 0 and p[5] == b"\xff" * 160 for p in packets)  # μ-law silence while nothing plays
    # A correctness check, not a performance one: the pacer follows the clock.
    assert abs(count - elapsed / 0.02) <= max(5, 0.05 * elapsed / 0.02)


async def test_ports_are_even_with_the_rtcp_port_above_bound_too(peer):
    session = await open_session(peer.address)
    try:
        assert session.local_port % 2 == 0 and session.local_port in PORTS
        peer.send(bytes([0x81, 201, 0, 7]) + b"\x00" * 28, session.local_port + 1)  # a receiver report
        peer.send(bytes([0x81, 200, 0, 6]) + b"\x00" * 24, session.local_port)  # RTCP muxed onto RTP
        async with asyncio.timeout(5):
            while session.stats["rtcp_in"] < 2:
                await asyncio.sleep(0.01)
        assert session.stats["malformed"] == {}
    finally:
        await session.close()


async def test_a_busy_port_is_skipped_and_a_full_range_refused(peer):
    loop = asyncio.get_running_loop()
    blocker, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    busy = blocker.get_extra_info("sockname")[1]
    try:
        with pytest.raises(NoRtpPort):
            await RtpSession.open(
                bind_host="127.0.0.1", ports=range(busy - busy % 2, busy - busy % 2 + 2), codec=PCMU,
                dtmf_payload_type=None, remote=peer.address, timeout_s=30,
            )
    finally:
        blocker.close()


async def test_media_latches_to_the_source_of_the_callers_rtp(peer):
    caller = await open_peer()  # the caller's real address, behind NAT: not what the SDP said
    stranger = await open_peer()
    session = await open_session(peer.address)
    try:
        await peer.wait_for(1)
        caller.send(rtp(0, 1, 0, 0xCAFE, b"\x00" * 160), session.local_port)
        await caller.wait_for(3)
        # Another address with another SSRC cannot take the call's audio.
        stranger.send(rtp(0, 2, 160, 0xBAD, b"\x00" * 160), session.local_port)
        await caller.wait_for(len(caller.received) + 5)
        assert stranger.received == []
        assert session.stats["malformed"] == {"foreign_source": 1}
        # The caller's SSRC from a new address (a NAT rebinding) moves the latch.
        stranger.send(rtp(0, 2, 160, 0xCAFE, b"\x00" * 160), session.local_port)
        await stranger.wait_for(3)
        assert session.stats["relatches"] == 1
    finally:
        await session.close()
        caller.transport.close()
        stranger.transport.close()


async def test_out_of_order_packets_come_out_in_order_and_a_lost_one_as_silence(peer):
    session = await open_session(peer.address)
    try:
        for seq, fill in [(10, 1), (12, 3), (11, 2), (11, 2), (14, 5)]:
            peer.send(rtp(0, seq, seq * 160, 7, bytes([fill]) * 160), session.local_port)
        frames = await next_events(session, 5, kinds=(InboundAudio,))
        assert [f.audio[0] for f in frames] == [1, 2, 3, 0xFF, 5]
        assert [f.timestamp_ms for f in frames] == [0, 20, 40, 60, 80]
        # The repeat of 11 came after 11 was passed on: skipped as late.
        assert (session.stats["late"], session.stats["lost"]) == (1, 1)
    finally:
        await session.close()


async def test_dtmf_three_end_packets_give_one_digit_and_a_new_press_another(peer):
    session = await open_session(peer.address, dtmf=96)
    try:
        seq = 100
        for ts, digit in [(8000, 5), (16000, 5)]:
            for end in (False, True, True, True):
                payload = struct.pack("!BBH", digit, (0x80 if end else 0) | 10, 400)
                peer.send(rtp(96, seq, ts, 7, payload), session.local_port)
                seq += 1
        digits = await next_events(session, 2, kinds=(Dtmf,))
        assert [d.digit for d in digits] == ["5", "5"]
        await asyncio.sleep(0.1)
        assert session.stats["dtmf"] == 2
    finally:
        await session.close()


async def test_played_audio_goes_out_in_order_and_its_mark_comes_back_after_it(peer):
    session = await open_session(peer.address)
    try:
        audio = bytes(range(1, 161)) + bytes(range(2, 162)) + bytes(range(3, 163))
        session.play(audio)
        session.mark("answer:1")
        [mark] = await next_events(session, 1, kinds=(MarkPlayed,))
        assert mark.name == "answer:1"
        assert session.played_bytes == len(audio)
        await asyncio.sleep(0.1)
        payloads = [p[5] for p in peer.packets()]
        sent = b"".join(p for p in payloads if p != b"\xff" * 160)
        assert sent == audio
    finally:
        await session.close()


async def test_clear_drops_queued_audio_at_once_and_returns_the_pending_marks(peer):
    session = await open_session(peer.address)
    try:
        session.play(b"\x01" * 160 * 100)  # two seconds
        session.mark("a")
        session.play(b"\x02" * 160)
        session.mark("b")
        await peer.wait_for(5)
        assert session.clear() == ["a", "b"]
        marks = await next_events(session, 2, kinds=(MarkPlayed,))
        assert [m.name for m in marks] == ["a", "b"]
        heard = session.played_bytes
        assert 0 < heard < 160 * 100
        count = len(peer.received)
        await peer.wait_for(count + 5)
        assert all(p[5] == b"\xff" * 160 for p in peer.packets()[count + 1 :])
        assert session.played_bytes == heard
    finally:
        await session.close()


async def test_the_media_timeout_fires_when_no_rtp_arrives(peer):
    session = await open_session(peer.address, timeout_s=0.3)
    try:
        async with asyncio.timeout(5):
            await session.timed_out.wait()
    finally:
        await session.close()


async def test_inbound_rtp_keeps_the_media_timeout_away(peer):
    session = await open_session(peer.address, timeout_s=1.0)
    try:
        for seq in range(30):  # 1.5 s of packets every 50 ms
            peer.send(rtp(0, seq, seq * 160, 7, b"\x00" * 160), session.local_port)
            await asyncio.sleep(0.05)
        assert not session.timed_out.is_set()
    finally:
        await session.close()


async def test_malformed_datagrams_are_counted_by_kind_and_the_call_goes_on(peer):
    session = await open_session(peer.address)
    try:
        good = [rtp(0, seq, seq * 160, 7, bytes([seq]) * 160) for seq in range(1, 5)]
        bad = [
            b"\x00\x01",  # too short
            b"\x40" + b"\x00" * 20,  # version 1
            rtp(18, 9, 0, 7, b"\x00" * 20),  # G.729: not agreed
            rtp(0, 9, 0, 7, b""),  # audio with no audio
            rtp(101, 9, 0, 7, b"\x01\x02"),  # telephone-event of 2 bytes
            b"\xa0" + b"\x00" * 11 + b"ab\x00",  # padding count 0
        ]
        for g, b in zip(good, bad, strict=False):
            peer.send(b, session.local_port)
            peer.send(g, session.local_port)
        peer.send(bad[-2], session.local_port)
        peer.send(bad[-1], session.local_port)
        frames = await next_events(session, 4, kinds=(InboundAudio,))
        assert [f.audio[0] for f in frames] == [1, 2, 3, 4]
        await asyncio.sleep(0.1)
        assert session.stats["malformed"] == {
            "too_short": 1, "bad_version": 1, "unexpected_payload": 1, "bad_audio": 1, "bad_dtmf": 1, "bad_padding": 1,
        }
        await peer.wait_for(len(peer.received) + 3)  # our side still sends
    finally:
        await session.close()


async def test_a_pcma_call_arrives_as_ulaw_frames_and_is_answered_in_alaw(peer):
    session = await open_session(peer.address, codec=PCMA, dtmf=None)
    try:
        ulaw = bytes(range(256)) * 3  # 96 ms
        alaw = ulaw_to_alaw(ulaw)
        for i in range(3):  # sipp's g711a sample sends 30 ms packets
            chunk = alaw[i * 240 : (i + 1) * 240]
            peer.send(rtp(8, 40 + i, i * 240, 7, chunk), session.local_port)
        frames = await next_events(session, 4, kinds=(InboundAudio,))
        assert all(len(f.audio) == 160 for f in frames)
        # A-law ⇄ μ-law is not exact for every code, but close: compare after one more round.
        assert ulaw_to_alaw(b"".join(frames.audio for frames in frames)) == alaw[:640]
        session.play(b"\x10" * 160)
        await peer.wait_for(10)
        payloads = [p[5] for p in peer.packets()]
        assert {p[1] for p in peer.packets()} == {8}
        assert b"\xd5" * 160 in payloads  # A-law silence
        assert ulaw_to_alaw(b"\x10" * 160) in payloads
    finally:
        await session.close()


async def test_on_hold_nothing_is_sent_and_the_stream_resumes_where_the_clock_is(peer):
    session = await open_session(peer.address)
    try:
        session.play(b"\x01" * 1600)
        await peer.wait_for(3)
        session.set_hold(False)
        await asyncio.sleep(0.05)  # a tick in flight may still land
        before = len(peer.received)
        held_played = session.played_bytes
        await asyncio.sleep(0.3)
        assert len(peer.received) == before
        assert session.played_bytes == held_played  # nothing played to nobody
        session.set_hold(True)
        await peer.wait_for(before + 2)
        packets = peer.packets()
        gap = packets[before]
        last = packets[before - 1]
        assert gap[2] == (last[2] + 1) % 65536
        assert (gap[3] - last[3]) % 2**32 >= 160 * 10  # the timestamp kept time
    finally:
        await session.close()


async def test_a_blocked_loop_makes_the_pacer_resync_rather_than_burst(peer):
    session = await open_session(peer.address)
    try:
        await peer.wait_for(3)
        time.sleep(0.3)  # the event loop held on purpose: 15 ticks missed
        count = len(peer.received)
        await peer.wait_for(count + 6)
        assert session.stats["resyncs"] >= 1
        packets = peer.packets()
        jumps = [(b[3] - a[3]) % 2**32 for a, b in zip(packets, packets[1:], strict=False)]
        assert max(jumps) >= 160 * 10  # the missed time shows in the timestamp...
        sequences = [p[2] for p in packets]
        assert all((b - a) % 65536 == 1 for a, b in zip(sequences, sequences[1:], strict=False))  # ...not as loss
        arrivals = [t for t, _ in peer.received]
        assert sum(1 for a, b in zip(arrivals, arrivals[1:], strict=False) if b - a < 0.002) <= 4  # no burst
    finally:
        await session.close()


async def test_a_new_sdp_address_redirects_the_media_and_opens_the_latch_again(peer):
    moved = await open_peer()
    session = await open_session(peer.address)
    try:
        peer.send(rtp(0, 1, 0, 0xCAFE, b"\x00" * 160), session.local_port)  # latched to peer, SSRC 0xCAFE
        await peer.wait_for(2)
        session.set_remote(moved.address)  # a re-INVITE moved the caller's media
        await moved.wait_for(2)
        moved.send(rtp(0, 500, 0, 0xF00D, b"\x00" * 160), session.local_port)  # its new stream
        await next_events(session, 2, kinds=(InboundAudio,))
        assert session.stats["malformed"] == {}
        assert moved.received
    finally:
        await session.close()
        moved.transport.close()
