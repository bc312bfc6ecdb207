"""One call's RTP media: the sockets, the 20 ms pacer, symmetric RTP, inbound frames.

``RtpSession`` owns an even RTP port and the RTCP port above it. Inbound packets
are checked (``rtp.py``), put back in order, converted to μ-law and cut into
160-byte 20 ms frames — the shape the Twilio path produces — and DTMF becomes one
``Dtmf`` per key press. Outbound, one task per call wakes on absolute
``loop.time()`` deadlines every 20 ms and sends the next frame of the playout
buffer, or silence: we never suppress silence, so sequence and timestamp run on
continuously and a 10-minute call does not drift from the clock.

Symmetric RTP: we send to where the caller's RTP comes from, the SDP address
before that. The first valid packet latches its source and SSRC. After that a
packet from a new address moves the latch only if it carries the latched SSRC
(a NAT rebinding keeps the SSRC); one from the latched address with a new SSRC is
the caller restarting its stream. Anything else — another address with another
SSRC — is counted as ``foreign_source`` and dropped, so a stranger who finds our
port cannot redirect the agent's voice or speak into the call mid-way. The
first packet must still be trusted from any address, because a caller behind NAT
sends from an address its SDP does not name; a new SDP address (``set_remote``)
opens the latch again for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Protocol

from agentplatform.audio.codecs import ALAW_SILENCE, alaw_to_ulaw, ulaw_to_alaw
from agentplatform.carriers.base import Dtmf, InboundAudio, MarkPlayed
from agentplatform.carriers.sip.dtmf_out import Tick, plan_ticks
from agentplatform.carriers.sip.playout import PlayoutBuffer
from agentplatform.carriers.sip.rtp import (
    CLOCK_RATE,
    FRAME_BYTES,
    FRAME_SAMPLES,
    ULAW_SILENCE,
    DtmfDetector,
    FrameAssembler,
    MalformedRtp,
    ReorderBuffer,
    RtpMalformedKind,
    RtpPacket,
    RtpSender,
    looks_like_rtcp,
    parse_rtp,
    parse_telephone_event,
)
from agentplatform.errors import CarrierError

log = logging.getLogger(__name__)

FRAME_S = FRAME_SAMPLES / CLOCK_RATE
MAX_BEHIND_FRAMES = 2  # further behind than this, the pacer resyncs instead of bursting
MAX_INBOUND_EVENTS = 500  # 10 s of frames waiting for a reader; older audio is dropped after that

Address = tuple[str, int]
MediaEvent = InboundAudio | Dtmf | MarkPlayed


class Codec(Protocol):
    """What the SDP answer agreed (``sdp.Codec``): ``name`` is "PCMU" or "PCMA"."""

    payload_type: int
    name: str


class NoRtpPort(CarrierError):
    """Every even port in the RTP range (with the RTCP port above it) is taken."""


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram, on_error) -> None:
        self._on_datagram = on_datagram
        self._on_error = on_error

    def datagram_received(self, data: bytes, addr) -> None:
        self._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self._on_error(exc)


class RtpSession:
    """The media of one call. Built by ``open``; everything runs on the event loop."""

    def __init__(
        self,
        *,
        codec: Codec,
        dtmf_payload_type: int | None,
        remote: Address | None,
        timeout_s: float,
        loop: asyncio.AbstractEventLoop,
        reorder_s: float = 0.06,
        playout_limit_s: float = 60.0,
    ) -> None:
        if codec.name not in ("PCMU", "PCMA"):
            raise ValueError(f"codec {codec.name!r} is not PCMU or PCMA")
        self.codec = codec
        self.dtmf_payload_type = dtmf_payload_type
        self.timeout_s = timeout_s
        self.local_port = 0
        self.timed_out = asyncio.Event()
        self.malformed_counts: Counter[str] = Counter()
        self._loop = loop
        self._alaw = codec.name == "PCMA"
        self._silence = bytes([ALAW_SILENCE if self._alaw else ULAW_SILENCE]) * FRAME_BYTES
        self._remote = _usable(remote)
        self._latched: Address | None = None
        self._peer_ssrc: int | None = None
        self._sender = RtpSender(codec.payload_type)
        self._playout = PlayoutBuffer(int(playout_limit_s * CLOCK_RATE))
        self._reorder = ReorderBuffer(reorder_s)
        self._assembler = FrameAssembler()
        self._dtmf = DtmfDetector()
        self._events: deque[MediaEvent] = deque()
        self._wake = asyncio.Event()
        self._sending = True
        self._closed = False
        self._last_rx = loop.time()
        self._transit: int | None = None
        self._jitter = 0.0  # RFC 3550 A.8, in timestamp units
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._pacer: asyncio.Task | None = None
        self._count = Counter[str]()
        self._dtmf_ticks: deque[Tick] = deque()  # telephone-events to send (dtmf_out)
        self._dtmf_sent = asyncio.Event()
        self._dtmf_sent.set()
        self._event_timestamp = 0

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        *,
        bind_host: str,
        ports: range,
        codec: Codec,
        dtmf_payload_type: int | None,
        remote: Address | None,
        timeout_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
        **tuning: float,
    ) -> RtpSession:
        """Bind an even RTP port in ``ports`` and the RTCP port above it, start the
        pacer. Raises ``NoRtpPort`` when the range is full."""
        loop = loop or asyncio.get_running_loop()
        session = cls(codec=codec, dtmf_payload_type=dtmf_payload_type, remote=remote, timeout_s=timeout_s, loop=loop, **tuning)
        await session._bind(bind_host, ports)
        session._pacer = loop.create_task(session._pace(), name=f"rtp-pacer-{session.local_port}")
        return session

    async def _bind(self, host: str, ports: range) -> None:
        candidates = [p for p in ports if p % 2 == 0 and p + 1 in ports]
        if candidates:  # start anywhere in the range: ports are not handed out in a guessable order
            start = random.randrange(len(candidates))
            candidates = candidates[start:] + candidates[:start]
        for port in candidates:
            try:
                rtp, _ = await self._loop.create_datagram_endpoint(
                    lambda: _Datagrams(self._on_rtp, self._on_socket_error), local_addr=(host, port)
                )
            except OSError:
                continue
            try:
                rtcp, _ = await self._loop.create_datagram_endpoint(
                    lambda: _Datagrams(self._on_rtcp, self._on_socket_error), local_addr=(host, port + 1)
                )
            except OSError:
                rtp.close()
                continue
            self._rtp_transport, self._rtcp_transport = rtp, rtcp
            self.local_port = port
            return
        raise NoRtpPort(f"no free even RTP port with its RTCP port in {ports.start}-{ports.stop - 1} on {host}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pacer is not None:
            self._pacer.cancel()
            try:
                await self._pacer
            except asyncio.CancelledError:
                pass
        for transport in (self._rtp_transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._dtmf_ticks.clear()
        self._dtmf_sent.set()
        self._wake.set()

    def restart_inbound(self) -> None:
        """The call we placed was answered: what came in while it rang (early media)
        is dropped, not heard by anyone, and the media timeout counts from now."""
        self._events.clear()
        self._deliver(self._reorder.flush())
        self._events.clear()
        self._last_rx = self._loop.time()
        self.timed_out.clear()

    # ------------------------------------------------------------- outbound

    def set_remote(self, addr: Address | None) -> None:
        """A new SDP address (re-INVITE): send there, and latch afresh on the next packet."""
        self._remote = _usable(addr)
        self._latched = None
        self._peer_ssrc = None

    def play(self, ulaw: bytes) -> None:
        self._playout.play(ulaw)

    def mark(self, name: str) -> None:
        for played in self._playout.mark(name):
            self._emit(MarkPlayed(played))

    def clear(self) -> list[str]:
        """Drop queued audio at once; the pending marks are returned and also
        yielded as ``MarkPlayed`` now, as Twilio's clear does."""
        pending = self._playout.clear()
        for name in pending:
            self._emit(MarkPlayed(name))
        return pending

    async def send_dtmf(self, digits: str) -> None:
        """Send validated ``digits`` (keys and ``w``) as RFC 4733 telephone-events in
        the pacer's ticks; returns once the last end packet went out. ``CarrierError``
        when the far end accepted no telephone-event payload type."""
        if self.dtmf_payload_type is None:
            raise CarrierError("the far end did not accept telephone-event: no DTMF can be sent")
        if self._closed:
            raise CarrierError("the call's media is closed")
        self._dtmf_ticks.extend(plan_ticks(digits))
        if self._dtmf_ticks:
            self._dtmf_sent.clear()
        await self._dtmf_sent.wait()

    def set_hold(self, sending: bool) -> None:
        """``sending=False`` while the caller holds us (sendonly/inactive): the pacer
        keeps time but sends nothing and plays nothing, so nothing counts as heard."""
        self._sending = sending

    @property
    def played_bytes(self) -> int:
        """μ-law bytes of queued audio sent so far (what the caller can have heard)."""
        return self._playout.sent_bytes

    async def _pace(self) -> None:
        loop = self._loop
        deadline = loop.time()
        while True:
            now = loop.time()
            behind = int((now - deadline) / FRAME_S)
            if behind > MAX_BEHIND_FRAMES:
                deadline += behind * FRAME_S
                self._sender.skip(behind)
                self._count["resyncs"] += 1
                self._count["frames_skipped"] += behind
            try:
                self._tick(now)
            except Exception:  # one bad tick must not silence the call
                log.exception("RTP pacer tick failed")
                self._count["tick_errors"] += 1
            deadline += FRAME_S
            if deadline > loop.time():
                waker = loop.create_future()
                handle = loop.call_at(deadline, _resolve, waker)
                try:
                    await waker
                finally:
                    handle.cancel()
            else:
                await asyncio.sleep(0)  # catching up: still let others run

    def _tick(self, now: float) -> None:
        self._deliver(self._reorder.pop_ready(now))
        if not self.timed_out.is_set() and now - self._last_rx >= self.timeout_s:
            log.info("no RTP for %.0f s on port %d: media timeout", self.timeout_s, self.local_port)
            self.timed_out.set()
        if not self._sending:
            self._sender.skip(1)
            return
        if self._dtmf_ticks and self._send_dtmf_tick():
            return
        frame, marks = self._playout.take_frame()
        if frame is None:
            payload = self._silence
            self._count["silence_out"] += 1
        else:
            payload = ulaw_to_alaw(frame) if self._alaw else frame
        self._send_packet(self._sender.next_packet(payload))
        for name in marks:
            self._emit(MarkPlayed(name))

    def _send_dtmf_tick(self) -> bool:
        """This tick's part of a DTMF string; True when it sent a telephone-event
        (the tick's audio then waits in the playout buffer)."""
        tick = self._dtmf_ticks.popleft()
        if not self._dtmf_ticks:
            self._dtmf_sent.set()
        if tick is None or self.dtmf_payload_type is None:
            return False
        if tick.first:
            self._event_timestamp = self._sender.timestamp
        packet = self._sender.event_packet(self.dtmf_payload_type, self._event_timestamp,
                                           tick.payload, marker=tick.first)
        self._send_packet(packet)
        self._count["dtmf_out"] += 1
        return True

    def _send_packet(self, packet: bytes) -> None:
        if self._remote is not None and self._rtp_transport is not None:
            try:
                self._rtp_transport.sendto(packet, self._remote)
                self._count["packets_out"] += 1
            except OSError as exc:
                self._count["send_errors"] += 1
                log.debug("RTP send to %s failed: %s", self._remote, exc)

    # -------------------------------------------------------------- inbound

    def events(self) -> AsyncIterator[MediaEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MediaEvent]:
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._wake.clear()
            await self._wake.wait()

    def _emit(self, event: MediaEvent) -> None:
        if len(self._events) >= MAX_INBOUND_EVENTS and isinstance(event, InboundAudio):
            self._count["inbound_dropped"] += 1  # nobody is reading: keep the newest audio
            return
        self._events.append(event)
        self._wake.set()

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        if looks_like_rtcp(data):
            self._count["rtcp_in"] += 1  # RTCP multiplexed onto the RTP port: read, not used
            return
        try:
            packet = parse_rtp(data)
            kind = self._check(packet, addr)
        except MalformedRtp as exc:
            self.malformed_counts[exc.kind] += 1
            log.debug("RTP from %s skipped: %s", addr, exc)
            return
        now = self._loop.time()
        self._last_rx = now
        self._count["packets_in"] += 1
        if kind == "audio":
            self._update_jitter(packet, now)
        self._deliver(self._reorder.push(packet.sequence, (kind, packet, now), now))

    def _check(self, packet: RtpPacket, addr: Address) -> str:
        """Which stream the packet belongs to; raises ``MalformedRtp`` if none.
        Accepting it may move the latch (see the module docstring)."""
        if packet.payload_type == self.codec.payload_type:
            if not packet.payload:
                raise MalformedRtp(RtpMalformedKind.BAD_AUDIO, "audio packet with no payload")
            kind = "audio"
        elif self.dtmf_payload_type is not None and packet.payload_type == self.dtmf_payload_type:
            parse_telephone_event(packet.payload)
            kind = "dtmf"
        else:
            raise MalformedRtp(RtpMalformedKind.UNEXPECTED_PAYLOAD, f"payload type {packet.payload_type}")
        if self._latched is None:
            self._latch(addr, packet.ssrc)
        elif packet.ssrc == self._peer_ssrc:
            if addr != self._latched:
                log.info("caller's RTP moved from %s to %s (same SSRC)", self._latched, addr)
                self._count["relatches"] += 1
                self._latch(addr, packet.ssrc)
        elif addr == self._latched:
            self._count["ssrc_changes"] += 1
            self._latch(addr, packet.ssrc)
        else:
            raise MalformedRtp(RtpMalformedKind.FOREIGN_SOURCE, f"SSRC {packet.ssrc:#x} from {addr[0]}:{addr[1]}")
        return kind

    def _latch(self, addr: Address, ssrc: int) -> None:
        if ssrc != self._peer_ssrc:  # a new stream: its numbering and timeline start afresh
            self._deliver(self._reorder.flush())
            self._reorder.reset()
            self._assembler.reset_timeline()
            self._transit = None
        self._latched = addr
        self._peer_ssrc = ssrc
        self._remote = addr

    def _deliver(self, items: list) -> None:
        for kind, packet, arrived in items:
            if kind == "dtmf":
                for digit in self._dtmf.feed(packet):
                    self._count["dtmf"] += 1
                    self._emit(Dtmf(digit))
                continue
            audio = alaw_to_ulaw(packet.payload) if self._alaw else packet.payload
            frames = self._assembler.add(packet.timestamp, audio)
            start = self._assembler.samples_out - len(frames) * FRAME_SAMPLES
            for i, frame in enumerate(frames):
                sample = start + i * FRAME_SAMPLES
                self._emit(InboundAudio(frame, timestamp_ms=sample * 1000 // CLOCK_RATE, received_at=arrived))

    def _update_jitter(self, packet: RtpPacket, now: float) -> None:
        transit = int(now * CLOCK_RATE) - packet.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < CLOCK_RATE:  # a timeline jump is not jitter
                self._jitter += (d - self._jitter) / 16
        self._transit = transit

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        self._count["rtcp_in"] += 1  # receiver reports are not used; the port is bound so they arrive somewhere

    def _on_socket_error(self, exc: Exception) -> None:
        self._count["socket_errors"] += 1  # e.g. ICMP port unreachable for what we sent
        log.debug("RTP socket error on port %d: %s", self.local_port, exc)

    # ---------------------------------------------------------------- stats

    @property
    def stats(self) -> dict:
        count = self._count
        return {
            "packets_in": count["packets_in"],
            "packets_out": count["packets_out"],
            "silence_out": count["silence_out"],
            "lost": self._reorder.lost,
            "late": self._reorder.late,
            "duplicates": self._reorder.duplicates,
            "jitter_ms": round(self._jitter * 1000 / CLOCK_RATE, 2),
            "malformed": dict(self.malformed_counts),
            "rtcp_in": count["rtcp_in"],
            "dtmf": count["dtmf"],
            "dtmf_out": count["dtmf_out"],
            "resyncs": count["resyncs"],
            "frames_skipped": count["frames_skipped"],
            "relatches": count["relatches"],
            "ssrc_changes": count["ssrc_changes"],
            "inbound_dropped": count["inbound_dropped"],
            "playout_dropped_bytes": self._playout.dropped_bytes,
            "playout_queued_bytes": self._playout.queued_bytes,
            "played_bytes": self._playout.sent_bytes,
            "gap_silence_samples": self._assembler.silence_filled,
            "send_errors": count["send_errors"],
            "socket_errors": count["socket_errors"],
            "tick_errors": count["tick_errors"],
        }


def _usable(addr: Address | None) -> Address | None:
    """No address, port 0 or an unspecified host (an old-style hold) means: do not send."""
    if addr is None or not addr[1] or addr[0] in ("0.0.0.0", "::", ""):
        return None
    return (addr[0], addr[1])


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
