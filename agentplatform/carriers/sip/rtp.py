"""RTP (RFC 3550) and RFC 4733 telephone events: pure parse and build, no sockets.

Also the two pure stages of the inbound path, so they are testable without a
socket: ``ReorderBuffer`` puts packets back in sequence order (waiting a bounded
time for a missing one), and ``FrameAssembler`` lays their audio on the RTP
timeline and cuts it into the 160-byte 20 ms μ-law frames the rest of the
platform expects, filling gaps with silence and re-chunking other packet sizes
(30 ms PCMA is common).

Anything a peer sends that we cannot use raises ``MalformedRtp`` with a
``RtpMalformedKind``, so the session can count it by kind and carry on: one bad
datagram must never end a call. Nothing here raises anything else for any input.
"""

from __future__ import annotations

import secrets
import struct
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from agentplatform.errors import CarrierError

RTP_VERSION = 2
HEADER_BYTES = 12
CLOCK_RATE = 8000  # G.711 and telephone-event: 8000 timestamp units per second
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 160  # one byte per G.711 sample
FRAME_MS = 20
ULAW_SILENCE = 0xFF
# An RTP packet in a call is a few hundred bytes (20-60 ms of G.711). Anything far
# larger is refused before its payload is looked at, so per-packet work stays small.
MAX_PACKET_BYTES = 2048
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32

# RFC 4733 events 0-15: the keypad.
_DTMF_KEYS = "0123456789*#ABCD"


class RtpMalformedKind(StrEnum):
    """Why an inbound datagram was skipped: the ``kind`` label of the malformed counter."""

    TOO_SHORT = "too_short"  # shorter than the fixed header, or than its CSRC list/extension
    BAD_VERSION = "bad_version"  # version field is not 2
    BAD_PADDING = "bad_padding"  # padding count zero or beyond the packet
    OVERSIZE = "oversize"  # far larger than any voice packet; not parsed
    UNEXPECTED_PAYLOAD = "unexpected_payload"  # a payload type the SDP answer did not agree
    BAD_AUDIO = "bad_audio"  # an audio packet with no payload
    BAD_DTMF = "bad_dtmf"  # a telephone-event payload that is not 4 bytes per event
    FOREIGN_SOURCE = "foreign_source"  # another address with another SSRC than the caller's


class MalformedRtp(CarrierError):
    """One inbound datagram we cannot use; ``kind`` names why, ``detail`` what."""

    def __init__(self, kind: RtpMalformedKind, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


@dataclass(slots=True, frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined id, data)


def looks_like_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: RTCP packet types 192-223 in the second byte; RTP payload
    types that would collide there are never assigned. Used to skip RTCP that a
    peer multiplexes onto the RTP port."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpPacket:
    """One RTP packet; raises ``MalformedRtp`` for anything else."""
    size = len(data)
    if size > MAX_PACKET_BYTES:
        raise MalformedRtp(RtpMalformedKind.OVERSIZE, f"{size} bytes")
    if size < HEADER_BYTES:
        raise MalformedRtp(RtpMalformedKind.TOO_SHORT, f"{size} bytes, header is 12")
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    if first >> 6 != RTP_VERSION:
        raise MalformedRtp(RtpMalformedKind.BAD_VERSION, f"version {first >> 6}")
    offset = HEADER_BYTES
    csrc_count = first & 0x0F
    if offset + 4 * csrc_count > size:
        raise MalformedRtp(RtpMalformedKind.TOO_SHORT, f"{csrc_count} CSRCs do not fit")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset) if csrc_count else ()
    offset += 4 * csrc_count
    extension = None
    if first & 0x10:
        if offset + 4 > size:
            raise MalformedRtp(RtpMalformedKind.TOO_SHORT, "extension header does not fit")
        profile, words = struct.unpack_from("!HH", data, offset)
        offset += 4
        if offset + 4 * words > size:
            raise MalformedRtp(RtpMalformedKind.TOO_SHORT, f"extension of {words} words does not fit")
        extension = (profile, bytes(data[offset : offset + 4 * words]))
        offset += 4 * words
    end = size
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > size:
            raise MalformedRtp(RtpMalformedKind.BAD_PADDING, f"padding {padding} of {size - offset} bytes")
        end -= padding
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
    )


_HEADER = struct.Struct("!BBHII")


def build_rtp(*, payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """A plain RTP packet: no CSRCs, no extension, no padding (what we send)."""
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} is not 0-127")
    second = payload_type | (0x80 if marker else 0)
    return _HEADER.pack(RTP_VERSION << 6, second, sequence % _SEQ_MOD, timestamp % _TS_MOD, ssrc % _TS_MOD) + payload


# ------------------------------------------------------------------- DTMF


@dataclass(slots=True, frozen=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """RFC 4733 §2.3: event, E/R/volume, duration. A packet may carry several
    4-byte blocks (redundancy); the last one is the newest state of the event."""
    if not payload or len(payload) % 4:
        raise MalformedRtp(RtpMalformedKind.BAD_DTMF, f"telephone-event payload of {len(payload)} bytes")
    event, flags, duration = struct.unpack_from("!BBH", payload, len(payload) - 4)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


class DtmfDetector:
    """Turns telephone-event packets into one digit per key press.

    A sender repeats the end packet (usually three times) and every packet of one
    event carries the event's start timestamp, so a digit is reported at the first
    end packet of a timestamp not reported before. If every end packet of a press
    is lost, the press is still reported when the next event starts. Events above
    15 (tones, flash) are not keys and are ignored.
    """

    def __init__(self) -> None:
        self._reported: deque[int] = deque(maxlen=16)  # timestamps of recent presses
        self._open: tuple[int, int] | None = None  # (timestamp, event) begun, not yet reported

    def feed(self, packet: RtpPacket) -> list[str]:
        """The digits this packet completes (usually none or one); raises
        ``MalformedRtp`` for a bad payload."""
        tone = parse_telephone_event(packet.payload)
        digits: list[str] = []
        if self._open is not None and self._open[0] != packet.timestamp:
            # A new event began while the previous one never ended for us.
            self._report(*self._open, digits)
        if packet.timestamp in self._reported:
            return digits
        if tone.end:
            self._report(packet.timestamp, tone.event, digits)
        else:
            self._open = (packet.timestamp, tone.event)
        return digits

    def _report(self, timestamp: int, event: int, digits: list[str]) -> None:
        self._open = None
        self._reported.append(timestamp)
        if event < len(_DTMF_KEYS):
            digits.append(_DTMF_KEYS[event])


# -------------------------------------------------------- reorder buffer


class ReorderBuffer:
    """Puts packets back in sequence order, waiting at most ``depth_s`` for a gap.

    A packet that arrives in order is released at once; one after a gap waits up
    to ``depth_s`` (40-60 ms) for the missing ones, which are then given up as
    lost. Sequence numbers are extended past 65535 (RFC 3550 A.1). A jump of more
    than ``MAX_DROPOUT`` ahead restarts the sequence; a packet far behind is late,
    unless two in a row say the sender restarted its numbering.

    Entries are opaque (``item`` is passed through), so telephone events, which
    share the sequence space with audio, can hold their place in the order.
    """

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100
    MAX_HELD = 64

    def __init__(self, depth_s: float = 0.06) -> None:
        self.depth_s = depth_s
        self._held: dict[int, tuple[object, float]] = {}  # extended seq → (item, arrived)
        self._next: int | None = None  # extended seq released next
        self._cycles = 0
        self._last_seq = 0
        self._bad_seq: int | None = None
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.restarts = 0

    def reset(self) -> None:
        """Forget the sequence (a new SSRC starts its own numbering)."""
        self._held.clear()
        self._next = None
        self._bad_seq = None

    def push(self, sequence: int, item: object, now: float) -> list[object]:
        """Add a packet; returns the items now released, in order."""
        if self._next is None:
            self._start(sequence)
        ext = self._extend(sequence)
        behind = self._next - ext
        if behind > 0:
            if behind > self.MAX_MISORDER:
                if self._bad_seq == sequence:  # two in a row: the sender restarted
                    released = self.flush()
                    self.restarts += 1
                    self._start(sequence)
                    self._held[self._next] = (item, now)
                    return released + self.pop_ready(now)
                self._bad_seq = (sequence + 1) % _SEQ_MOD
            self.late += 1
            return []
        self._bad_seq = None
        if ext - self._next > self.MAX_DROPOUT:
            released = self.flush()
            self.restarts += 1
            self._start(sequence)
            self._held[self._next] = (item, now)
            return released + self.pop_ready(now)
        if ext in self._held:
            self.duplicates += 1
            return []
        self._held[ext] = (item, now)
        return self.pop_ready(now)

    def pop_ready(self, now: float) -> list[object]:
        """Items released by now: the in-order run, and past any gap whose wait is over."""
        released: list[object] = []
        held = self._held
        while held:
            entry = held.pop(self._next, None)
            if entry is not None:
                released.append(entry[0])
                self._next += 1
                continue
            oldest = min(arrived for _, arrived in held.values())
            if now - oldest < self.depth_s and len(held) < self.MAX_HELD:
                break
            first = min(held)
            self.lost += first - self._next
            self._next = first
        return released

    def flush(self) -> list[object]:
        """Everything held, in order, gaps given up (the stream ended or restarted)."""
        items = [self._held[ext][0] for ext in sorted(self._held)]
        if self._held and self._next is not None:
            self.lost += max(self._held) - self._next + 1 - len(self._held)
        self._held.clear()
        return items

    def _start(self, sequence: int) -> None:
        self._cycles = 0
        self._last_seq = sequence
        self._next = sequence

    def _extend(self, sequence: int) -> int:
        """Extended sequence number near the newest seen (handles 65535 → 0)."""
        delta = (sequence - self._last_seq) % _SEQ_MOD
        if delta < _SEQ_MOD // 2:  # ahead (or equal)
            if sequence < self._last_seq:
                self._cycles += _SEQ_MOD
            self._last_seq = sequence
            return self._cycles + sequence
        # behind the newest: possibly from before the last wrap
        cycles = self._cycles - _SEQ_MOD if sequence > self._last_seq else self._cycles
        return cycles + sequence


# -------------------------------------------------------- frame assembly


class FrameAssembler:
    """Lays in-order μ-law payloads on the RTP timeline and cuts 160-byte frames.

    The gap between one packet's end and the next packet's timestamp is filled
    with silence (lost packets, a telephone event in between); an overlap is
    trimmed. A jump of more than ``max_gap_s`` is a new talk spurt or a restart,
    not a hole to fill, so the timeline simply continues from there — a peer that
    jumps its timestamp by hours cannot make us write hours of silence.
    """

    def __init__(self, max_gap_s: float = 1.0) -> None:
        self._max_gap = int(max_gap_s * CLOCK_RATE)
        self._expected_ts: int | None = None  # timestamp right after the audio so far
        self._pending = bytearray()
        self.samples_out = 0  # samples emitted in whole frames since the start
        self.silence_filled = 0  # samples of silence written for gaps

    def reset_timeline(self) -> None:
        """A new source: its timestamps start afresh."""
        self._expected_ts = None

    def add(self, timestamp: int, ulaw: bytes) -> list[bytes]:
        """Add one packet's audio; returns the whole frames now complete."""
        if self._expected_ts is not None:
            offset = (timestamp - self._expected_ts) % _TS_MOD
            if offset >= _TS_MOD // 2:  # before what we already have: trim the overlap
                overlap = _TS_MOD - offset
                if overlap >= len(ulaw):
                    return []
                ulaw = ulaw[overlap:]
                timestamp = (timestamp + overlap) % _TS_MOD
            elif 0 < offset <= self._max_gap:
                self._pending += bytes([ULAW_SILENCE]) * offset
                self.silence_filled += offset
        self._pending += ulaw
        self._expected_ts = (timestamp + len(ulaw)) % _TS_MOD
        return self._cut()

    def _cut(self) -> list[bytes]:
        pending = self._pending
        count = len(pending) // FRAME_BYTES
        if not count:
            return []
        frames = [bytes(pending[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]) for i in range(count)]
        del pending[: count * FRAME_BYTES]
        self.samples_out += count * FRAME_SAMPLES
        return frames


# ----------------------------------------------------------------- sending


class RtpSender:
    """Our outbound stream's numbering: random SSRC, sequence and timestamp
    (RFC 3550 §5.1, so packets from a stale stream are not mistaken for ours),
    then sequence +1 and timestamp +160 per 20 ms. The marker bit is set on the
    first packet only: we never suppress silence, so there is one talk spurt."""

    def __init__(self, payload_type: int, *, ssrc: int | None = None, sequence: int | None = None, timestamp: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        self._first = True

    def next_packet(self, payload: bytes) -> bytes:
        packet = build_rtp(
            payload_type=self.payload_type,
            sequence=self.sequence,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=self._first,
        )
        self._first = False
        self.sequence = (self.sequence + 1) % _SEQ_MOD
        self.timestamp = (self.timestamp + len(payload)) % _TS_MOD
        return packet

    def event_packet(self, payload_type: int, event_timestamp: int, payload: bytes, *,
                     marker: bool) -> bytes:
        """A telephone-event packet sent in one tick's place (RFC 4733 §2.3): it
        carries its event's start timestamp; sequence and the stream clock move on
        as for audio, so the audio after the key continues the same timeline."""
        packet = build_rtp(payload_type=payload_type, sequence=self.sequence,
                           timestamp=event_timestamp, ssrc=self.ssrc, payload=payload, marker=marker)
        self._first = False
        self.sequence = (self.sequence + 1) % _SEQ_MOD
        self.timestamp = (self.timestamp + FRAME_SAMPLES) % _TS_MOD
        return packet

    def skip(self, frames: int) -> None:
        """Time passed without a packet (hold, or the loop fell behind): the
        timestamp moves on with the clock; the sequence does not, as nothing was lost."""
        self.timestamp = (self.timestamp + frames * FRAME_SAMPLES) % _TS_MOD
