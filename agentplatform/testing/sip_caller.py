"""A simulated SIP trunk call, for tests and load runs against a live SIP server.

It does what a carrier's trunk does, over real UDP sockets: sends an INVITE with an
SDP offer (PCMU and/or PCMA, telephone-event at a payload type of its choosing),
retransmits it on timer A until the server answers (RFC 3261 §17.1.1), ACKs the 200
(and each retransmission of it), then sends RTP paced by its own clock, 20 ms a
packet, the caller's speech or silence, because a phone line never goes quiet. It
records every RTP packet it receives with its arrival time and source, decodes
PCMU and PCMA to what the caller heard, sends RFC 4733 DTMF, CANCELs, BYEs, and
answers the server's BYE, REFER (202, then NOTIFY with a ``message/sipfrag``),
NOTIFY, OPTIONS and re-INVITE.

    async with SipCaller("127.0.0.1:5060", to="+15550100") as caller:
        await caller.wait_for_audio(timeout=5)     # the greeting starts
        await caller.wait_for_silence(600, timeout=10)
        await caller.say(pcm16_8k)                 # then silence again
        heard = caller.heard_pcm()

Every message is built and read by ``sip_wire`` (written from the RFCs), never by
the server's own ``carriers/sip/``, so the simulator referees the server instead of
sharing its reading of the protocol. Faults the server could be blamed for land in
``protocol_errors``; ``rtp_faults()`` checks the server's RTP stream.

Impairments for tests: ``lose_sip`` drops the first N outgoing requests of a method
(``{"ACK": 1}`` makes the server retransmit its 200), ``lose_rtp``/``hold_rtp`` pick
outgoing RTP packets by index to drop or to send after the next one (reordered).
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import enum
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentplatform.testing import sip_wire as sip
from agentplatform.testing.sip_dialog import ClientDialog, Transport

ENCODINGS = {"PCMU": 0, "PCMA": 8}
SILENT_RMS = 50  # PCM16 RMS under which a frame counts as silence (A-law's quietest code is ±8)
_DECODE = {"PCMU": audioop.ulaw2lin, "PCMA": audioop.alaw2lin}
_ENCODE = {"PCMU": audioop.lin2ulaw, "PCMA": audioop.lin2alaw}


class CallState(enum.Enum):
    IDLE = "idle"
    CALLING = "calling"        # INVITE sent, nothing heard back
    PROCEEDING = "proceeding"  # a provisional response arrived
    CONFIRMED = "confirmed"    # 200 received and ACKed
    ENDED = "ended"


_ALLOWED = {
    CallState.IDLE: {CallState.CALLING},
    CallState.CALLING: {CallState.PROCEEDING, CallState.CONFIRMED, CallState.ENDED},
    CallState.PROCEEDING: {CallState.CONFIRMED, CallState.ENDED},
    CallState.CONFIRMED: {CallState.ENDED},
    CallState.ENDED: set(),
}


@dataclass(slots=True)
class CallerEvent:
    at: float  # time.monotonic()
    kind: str
    detail: str = ""


@dataclass(slots=True)
class ReceivedRtp:
    at: float
    source: tuple[str, int]
    packet: sip.RtpPacket


class SipCaller:
    """One simulated inbound trunk call to ``server`` ("host:port")."""

    def __init__(
        self, server: str, *, to: str, from_user: str = "+15555550100", local_host: str = "127.0.0.1",
        codecs: tuple[str, ...] = ("PCMU", "PCMA"), dtmf_payload_type: int | None = 101,
        ptime_ms: int = 20, t1: float = 0.5, lose_sip: dict[str, int] | None = None,
        lose_rtp: Callable[[int], bool] | None = None, hold_rtp: Callable[[int], bool] | None = None,
        refer_outcome: int | None = 200, with_sdp: bool = True,
    ) -> None:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"server must be HOST:PORT, got {server!r}")
        unknown = [c for c in codecs if c not in ENCODINGS]
        if unknown or not codecs:
            raise ValueError(f"codecs must be PCMU and/or PCMA, got {codecs!r}")
        if ptime_ms <= 0 or ptime_ms % 10:
            raise ValueError("ptime_ms must be a positive multiple of 10")
        self.server = (host, int(port))
        self.to, self.from_user, self.local_host = to, from_user, local_host
        self.codecs, self.dtmf_payload_type, self.ptime_ms = codecs, dtmf_payload_type, ptime_ms
        self.t1, self.with_sdp, self.refer_outcome = t1, with_sdp, refer_outcome
        self.lose_rtp, self.hold_rtp = lose_rtp, hold_rtp
        self.call_id = secrets.token_hex(12) + "@" + local_host

        self.state = CallState.IDLE
        self.final_status = 0
        self.invites_sent = 0
        self.oks_received = 0  # 200s to our INVITE, retransmissions included
        self.answer: sip.SdpAnswer | None = None
        self.codec = ""
        self.events: list[CallerEvent] = []
        self.protocol_errors: list[str] = []
        self.requests_received: list[sip.SipMessage] = []
        self.refers: list[str] = []
        self.received: list[ReceivedRtp] = []
        self.dtmf_received: list[tuple[str, int]] = []  # (digit, timestamp), one per event
        self.first_audio_at: float | None = None
        self.closed_by_server = False
        self.bye_status = 0

        self._transport = Transport(self.server, lose_sip or {}, self._on_request, self._error, self._log)
        self._dialog: ClientDialog | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtp_port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._speech = bytearray()  # PCM16 still to say
        self._speech_drained = asyncio.Event()
        self._speech_drained.set()
        self._dtmf: list[tuple[str, int]] = []
        self._dtmf_done = asyncio.Event()
        self._dtmf_done.set()
        self._heard = bytearray()  # PCM16, in arrival order
        self._last_voiced_end = 0
        self._audio_arrived = asyncio.Event()
        self._ended = asyncio.Event()
        self._final = asyncio.Event()
        self._provisional = asyncio.Event()

    # ------------------------------------------------------------ dialling

    async def __aenter__(self) -> SipCaller:
        if not await self.dial():
            await self.close()
            raise RuntimeError(f"the server did not answer the call: {self.final_status}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    def _to(self, state: CallState) -> None:
        if state not in _ALLOWED[self.state]:
            raise RuntimeError(f"call state: expected one of {sorted(s.value for s in _ALLOWED[self.state])}, "
                               f"got {state.value}")
        self.state = state
        self._log("state", state.value)
        if state is CallState.ENDED:
            self._ended.set()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        await self._transport.open(self.local_host)
        for _ in range(50):  # RTP on an even port, RTCP would be the next (RFC 3550 §11)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _RtpProtocol(self._on_rtp), local_addr=(self.local_host, 0))
            port = transport.get_extra_info("sockname")[1]
            if port % 2 == 0:
                self._rtp, self._rtp_port = transport, port
                return
            transport.close()
        raise RuntimeError("no even UDP port for RTP")

    def _offer(self) -> bytes:
        codecs = [(ENCODINGS[c], f"{c}/8000") for c in self.codecs]
        if self.dtmf_payload_type is not None:
            codecs.append((self.dtmf_payload_type, "telephone-event/8000"))
        return sip.sdp_offer(address=self.local_host, port=self._rtp_port, codecs=codecs,
                             session_id=int(time.time()), ptime=self.ptime_ms)

    async def dial(self, timeout: float | None = None) -> bool:
        """Send the INVITE and wait for a final response (timer B at most). Returns
        whether the call was answered (``final_status`` holds the code)."""
        await self._open()
        self._to(CallState.CALLING)
        self._dialog = ClientDialog(self._transport, call_id=self.call_id, local_host=self.local_host,
                                    from_user=self.from_user, to=self.to, t1=self.t1)
        invite = self._dialog.invite(self._offer() if self.with_sdp else b"")
        self._tasks.append(asyncio.create_task(self._invite_transaction(invite)))
        async with asyncio.timeout(timeout if timeout is not None else 64 * self.t1 + 1):
            await self._final.wait()
        return self.final_status == 200

    async def _invite_transaction(self, invite: sip.SipMessage) -> None:
        """Timer A: resend at T1, 2T1, 4T1… until any response; timer B gives up at 64·T1."""
        self._transport.expect(invite, self._on_invite_response)
        interval, deadline = self.t1, time.monotonic() + 64 * self.t1
        while not self._final.is_set():
            if not self._provisional.is_set():
                self.invites_sent += 1
                self._transport.send(invite)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(interval, max(0.0, deadline - time.monotonic()))):
                    await self._final.wait()
            interval *= 2
            if time.monotonic() >= deadline and not self._final.is_set():
                self.final_status = 408
                self._log("timeout", "timer B: no final response to INVITE")
                self._to(CallState.ENDED)
                self._final.set()

    def _on_invite_response(self, response: sip.SipMessage) -> None:
        assert self._dialog is not None
        self._log("response", f"{response.status} {response.reason}")
        if response.status < 200:
            self._provisional.set()
            if self.state is CallState.CALLING:
                self._to(CallState.PROCEEDING)
            return
        if 200 <= response.status < 300:
            self.oks_received += 1
            if self.oks_received == 1:
                self._on_answered(response)
            self._dialog.ack_2xx()  # again for every retransmitted 200 (§13.2.2.4)
            return
        if self._final.is_set():
            self._dialog.ack_error(response)  # a retransmitted final: ACK it again
            return
        self.final_status = response.status
        self._dialog.ack_error(response)
        self._to(CallState.ENDED)
        self._final.set()

    def _on_answered(self, response: sip.SipMessage) -> None:
        assert self._dialog is not None
        problems = self._dialog.confirm(response)
        self.protocol_errors += problems
        try:
            self.answer = sip.parse_sdp_answer(response.body)
        except sip.SipSyntaxError as exc:
            self._error(f"200 to INVITE has no usable SDP answer: {exc}")
        if self.answer is not None:
            self._check_answer(self.answer)
        self.final_status = 200
        self._to(CallState.CONFIRMED)
        self._final.set()
        if self.codec:
            self._tasks.append(asyncio.create_task(self._send_loop()))

    def _check_answer(self, answer: sip.SdpAnswer) -> None:
        offered = {ENCODINGS[c]: c for c in self.codecs}
        audio = [pt for pt in answer.payload_types if pt in offered]
        strangers = [pt for pt in answer.payload_types if pt not in offered and pt != self.dtmf_payload_type]
        if strangers:
            self._error(f"SDP answer has payload types we did not offer: {strangers}")
        if not audio:
            self._error(f"SDP answer accepts none of our codecs: {answer.payload_types}")
            return
        self.codec = offered[audio[0]]
        for pt, name in answer.rtpmap.items():
            if pt == self.dtmf_payload_type and not name.lower().startswith("telephone-event"):
                self._error(f"SDP answer maps our telephone-event payload type {pt} to {name}")
            if pt in offered and not name.upper().startswith(offered[pt]):
                self._error(f"SDP answer maps payload type {pt} to {name}, we offered {offered[pt]}")
        if answer.ptime not in (None, self.ptime_ms):
            self._log("ptime", f"answer asks for {answer.ptime} ms")

    # ------------------------------------------------------------ the caller speaks

    async def say(self, pcm16_8k: bytes) -> None:
        """Stream PCM16 8 kHz mono as the caller's voice; returns once it is sent."""
        if self.state is not CallState.CONFIRMED:
            raise RuntimeError(f"the call is {self.state.value}, not confirmed: nothing to say into")
        if not self.codec:
            raise RuntimeError("the SDP answer named none of our codecs: no audio is being sent")
        if len(pcm16_8k) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        self._speech += pcm16_8k
        self._speech_drained.clear()
        await self._speech_drained.wait()

    async def say_ulaw(self, ulaw: bytes) -> None:
        await self.say(audioop.ulaw2lin(ulaw, 2))

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """One RFC 4733 event: packets every ptime with a growing duration, the first
        marked, then the end packet three times (§2.5.1.4); returns once all are sent."""
        if self.dtmf_payload_type is None:
            raise RuntimeError("no telephone-event payload type was offered")
        if digit.upper() not in sip.DTMF_EVENTS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self._dtmf.append((digit, max(self.ptime_ms, duration_ms)))
        self._dtmf_done.clear()
        self._log("dtmf", digit)
        await self._dtmf_done.wait()

    async def _send_loop(self) -> None:
        """One packet per ptime on absolute deadlines: speech, a DTMF event, or silence."""
        assert self.answer is not None and self._rtp is not None
        target = (self.answer.address, self.answer.port)
        samples = 8 * self.ptime_ms
        pt, encode = ENCODINGS[self.codec], _ENCODE[self.codec]
        ssrc, seq, ts0 = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        held: bytes | None = None
        event: list[tuple[bool, int]] = []  # remaining (end, duration) packets of a DTMF event
        event_ts, digit = 0, ""
        t0, tick = time.monotonic(), 0
        while self.state is CallState.CONFIRMED:
            ts = ts0 + tick * samples
            if not event and self._dtmf:
                digit, ms = self._dtmf.pop(0)
                steps = ms // self.ptime_ms
                event = [(False, samples * k) for k in range(1, steps + 1)] + [(True, samples * steps)] * 3
                event_ts = ts
            if event:
                end, duration = event.pop(0)
                first = duration == samples and not end
                packet = sip.RtpPacket(self.dtmf_payload_type or 0, seq, event_ts, ssrc,
                                       sip.dtmf_payload(digit, end=end, duration=duration), marker=first)
                if not event and not self._dtmf:
                    self._dtmf_done.set()
            else:
                pcm = bytes(self._speech[:2 * samples]).ljust(2 * samples, b"\0")
                del self._speech[:2 * samples]
                packet = sip.RtpPacket(pt, seq, ts, ssrc, encode(pcm, 2), marker=tick == 0)
                if not self._speech:
                    self._speech_drained.set()
            data = packet.encode()
            if self.lose_rtp is not None and self.lose_rtp(tick):
                pass
            elif self.hold_rtp is not None and self.hold_rtp(tick) and held is None:
                held = data
            else:
                self._rtp.sendto(data, target)
                if held is not None:
                    self._rtp.sendto(held, target)
                    held = None
            seq, tick = (seq + 1) & 0xFFFF, tick + 1
            await asyncio.sleep(max(0.0, t0 + tick * self.ptime_ms / 1000 - time.monotonic()))
        self._speech_drained.set()
        self._dtmf_done.set()

    # ------------------------------------------------------------ the caller hears

    def _on_rtp(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            packet = sip.parse_rtp(data)
        except sip.SipSyntaxError as exc:
            self._error(f"bad RTP from {source}: {exc}")
            return
        now = time.monotonic()
        self.received.append(ReceivedRtp(now, source, packet))
        if packet.payload_type == self.dtmf_payload_type:
            try:
                digit, end, _ = sip.parse_dtmf(packet.payload)
            except sip.SipSyntaxError as exc:
                self._error(str(exc))
                return
            if end and (digit, packet.timestamp) not in self.dtmf_received:
                self.dtmf_received.append((digit, packet.timestamp))
            return
        codec = {0: "PCMU", 8: "PCMA"}.get(packet.payload_type)
        if codec is None:
            self._error(f"RTP payload type {packet.payload_type} was not in the SDP answer")
            return
        pcm = _DECODE[codec](packet.payload, 2)
        self._heard += pcm
        if audioop.rms(pcm, 2) > SILENT_RMS:
            self._last_voiced_end = len(self._heard)
            if self.first_audio_at is None:
                self.first_audio_at = now
                self._log("first_audio")
            self._audio_arrived.set()

    def rtp_faults(self, *, continuous: bool = False) -> list[str]:
        """What is wrong with the server's RTP stream per RFC 3550: sequence not +1,
        timestamp going back or advancing by less than the samples sent, SSRC changing,
        marker after the first. A timestamp leaping ahead (a sender that skipped time to
        catch up with its clock) is legal RTP, and a fault only when ``continuous``."""
        faults: list[str] = []
        audio = [r.packet for r in self.received if r.packet.payload_type != self.dtmf_payload_type]
        for before, after in zip(audio, audio[1:], strict=False):
            if after.ssrc != before.ssrc:
                faults.append(f"SSRC changed {before.ssrc:#x} -> {after.ssrc:#x}")
            elif (after.sequence - before.sequence) & 0xFFFF != 1:
                faults.append(f"sequence {before.sequence} -> {after.sequence}")
            elif not (len(before.payload) <= (after.timestamp - before.timestamp) & 0xFFFFFFFF < 1 << 31) or (
                    continuous and (after.timestamp - before.timestamp) & 0xFFFFFFFF != len(before.payload)):
                faults.append(f"timestamp {before.timestamp} -> {after.timestamp} after {len(before.payload)} samples")
            if after.marker:
                faults.append(f"marker bit on packet {after.sequence}")
        return faults

    # ------------------------------------------------------------ the server's requests

    def _on_request(self, request: sip.SipMessage, source: tuple[str, int]) -> sip.SipMessage:
        """The response to a request from the server (the transport resends it for retransmissions)."""
        self.requests_received.append(request)
        self._log("request", request.method)
        dialog = self._dialog
        if request.method == "ACK":
            return request  # nothing to answer
        if dialog is None or not dialog.owns(request):
            return sip.response_to(request, 481)
        handler = getattr(self, f"_on_{request.method.lower()}", None)
        if handler is None:
            return sip.response_to(request, 501)
        return handler(request)

    def _on_bye(self, request: sip.SipMessage) -> sip.SipMessage:
        if self.state is CallState.CONFIRMED:
            self.closed_by_server = True
            self._to(CallState.ENDED)
        return sip.response_to(request, 200)

    def _on_options(self, request: sip.SipMessage) -> sip.SipMessage:
        return sip.response_to(request, 200)

    def _on_notify(self, request: sip.SipMessage) -> sip.SipMessage:
        return sip.response_to(request, 200)

    def _on_info(self, request: sip.SipMessage) -> sip.SipMessage:
        return sip.response_to(request, 200)

    def _on_refer(self, request: sip.SipMessage) -> sip.SipMessage:
        refer_to = request.get("refer-to")
        if not refer_to:
            return sip.response_to(request, 400, reason="Missing Refer-To")
        self.refers.append(sip.uri_of(refer_to))
        self._tasks.append(asyncio.create_task(self._notify_refer()))
        return sip.response_to(request, 202)

    async def _notify_refer(self) -> None:
        """RFC 3515 §2.4.4: NOTIFY the progress of the transfer as a sipfrag."""
        assert self._dialog is not None
        await asyncio.sleep(0)
        await self._dialog.notify_refer(100, terminated=False)
        if self.refer_outcome is not None:
            await self._dialog.notify_refer(self.refer_outcome, terminated=True)

    def _on_invite(self, request: sip.SipMessage) -> sip.SipMessage:
        """A re-INVITE (session refresh or hold): answer with our session again."""
        direction = "sendrecv"
        if request.body:
            with contextlib.suppress(sip.SipSyntaxError):
                direction = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
                    sip.parse_sdp_answer(request.body).direction, "sendrecv")
        assert self._dialog is not None
        return self._dialog.answer_reinvite(request, self._offer().replace(b"a=sendrecv", b"a=" + direction.encode()))

    def _on_update(self, request: sip.SipMessage) -> sip.SipMessage:
        return self._on_invite(request)

    # ------------------------------------------------------------ waiting

    async def wait_for_audio(self, timeout: float, *, since: int = 0) -> float:
        """Wait until voiced (not silent) audio has arrived after byte ``since`` of
        ``heard_pcm()`` (0: any); returns ``time.monotonic()``."""
        async with asyncio.timeout(timeout):
            while self._last_voiced_end <= since or self.first_audio_at is None:
                self._audio_arrived.clear()
                await self._audio_arrived.wait()
        return time.monotonic()

    async def wait_for_silence(self, ms: float, timeout: float) -> None:
        """Wait until the line has carried ``ms`` of silence since the last voiced audio."""
        async with asyncio.timeout(timeout):
            while len(self._heard) - self._last_voiced_end < ms * 16:
                await asyncio.sleep(self.ptime_ms / 1000)

    async def wait_for_dtmf(self, count: int, timeout: float) -> list[str]:
        async with asyncio.timeout(timeout):
            while len(self.dtmf_received) < count:
                await asyncio.sleep(self.ptime_ms / 1000)
        return [digit for digit, _ in self.dtmf_received]

    async def wait_closed(self, timeout: float) -> bool:
        """Wait until the call has ended; returns whether the server ended it."""
        async with asyncio.timeout(timeout):
            await self._ended.wait()
        return self.closed_by_server

    # ------------------------------------------------------------ results and hang up

    def heard_pcm(self) -> bytes:
        """Everything the caller heard, PCM16 8 kHz mono, in arrival order."""
        return bytes(self._heard)

    def heard_ulaw(self) -> bytes:
        return audioop.lin2ulaw(bytes(self._heard), 2)

    async def cancel(self) -> int:
        """CANCEL the INVITE (only after a provisional response, §9.1); returns the
        INVITE's final status (487 expected)."""
        async with asyncio.timeout(64 * self.t1):
            await self._provisional.wait()
        assert self._dialog is not None
        status = await self._dialog.cancel()
        self._log("cancel", str(status))
        async with asyncio.timeout(64 * self.t1):
            await self._final.wait()
        return self.final_status

    async def hang_up(self) -> None:
        """BYE if the call is up, CANCEL if it is ringing; then close the sockets."""
        if self.state is CallState.CONFIRMED and self._dialog is not None:
            self._to(CallState.ENDED)
            self.bye_status = await self._dialog.bye()
            self._log("bye", str(self.bye_status))
        elif self.state in (CallState.CALLING, CallState.PROCEEDING):
            with contextlib.suppress(TimeoutError):
                await self.cancel()
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._rtp is not None:
            self._rtp.close()
        self._transport.close()

    def _log(self, kind: str, detail: str = "") -> None:
        self.events.append(CallerEvent(time.monotonic(), kind, detail))

    def _error(self, text: str) -> None:
        self.protocol_errors.append(text)
        self._log("protocol_error", text)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_packet(data, addr)


__all__ = ["CallState", "CallerEvent", "ReceivedRtp", "SipCaller"]
