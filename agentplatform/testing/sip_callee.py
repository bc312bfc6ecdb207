"""A simulated SIP callee (a trunk's far end), for tests of the calls we place.

It does what a callee behind a trunk does, over real UDP sockets: answers our
INVITE with 100 Trying, then (after ``ring_ms``) 180 Ringing, then — as told —
200 OK with an SDP answer (resent until the ACK, RFC 3261 §13.3.1.4), 486 Busy,
another failure status, or nothing at all until a CANCEL (200 to the CANCEL, 487
to the INVITE, which it resends until the ACK). ``challenge=401|407`` makes it ask
for digest credentials first and check the answer itself (RFC 7616, with
``hashlib`` — not the platform's ``digest.py``). Once answered it speaks a
scripted greeting as paced RTP (a person's "Hello?" or a machine's greeting and
beep), records what it hears (PCMU decoded to PCM16, RFC 4733 events), answers BYE
and can hang up itself.

Every message is built and read with ``sip_wire`` (written from the RFCs), never
with ``carriers/sip/``, so the callee referees the platform's UAC.

    async with SipCallee(greeting=pcm) as callee:
        ...  # dial f"sip:{{number}}@{callee.address}"
        await callee.wait_answered(5)
        await callee.wait_for_audio(5)
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field

from agentplatform.testing import sip_wire as sip
from agentplatform.testing.sip_dialog import via_destination

T1, T2 = 0.5, 4.0
REASONS = {401: "Unauthorized", 403: "Forbidden", 407: "Proxy Authentication Required",
           486: "Busy Here", 488: "Not Acceptable Here", 503: "Service Unavailable"}
SILENT_RMS = 50
_AUTH_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(slots=True)
class ReceivedDtmf:
    digit: str
    end: bool
    duration: int
    timestamp: int
    marker: bool


@dataclass(slots=True)
class _Invite:
    request: sip.SipMessage
    source: tuple[str, int]
    last: sip.SipMessage | None = None
    final: bool = False
    acked: asyncio.Event = field(default_factory=asyncio.Event)


class SipCallee(asyncio.DatagramProtocol):
    """One simulated callee on ``host`` (any free port; ``address`` says which)."""

    def __init__(self, *, host: str = "127.0.0.1", answer: str = "answer", fail_status: int = 503,
                 ring_ms: int = 200, challenge: int | None = None, username: str = "agent",
                 password: str = "secret", realm: str = "trunk.test", algorithm: str = "MD5",
                 qop: str | None = "auth", greeting: bytes = b"", greeting_delay_ms: int = 100,
                 hang_up_after_s: float | None = None) -> None:
        if answer not in ("answer", "busy", "never", "fail", "answer_despite_cancel"):
            raise ValueError(f"unknown answer mode {answer!r}")
        self.host, self.mode, self.fail_status, self.ring_ms = host, answer, fail_status, ring_ms
        self.challenge, self.username, self.password = challenge, username, password
        self.realm, self.algorithm, self.qop = realm, algorithm, qop
        self.greeting, self.greeting_delay_ms = greeting, greeting_delay_ms
        self.hang_up_after_s = hang_up_after_s
        self.port = 0
        self.invites: list[sip.SipMessage] = []  # every distinct INVITE (not retransmissions)
        self.requests: list[sip.SipMessage] = []
        self.auth_failures: list[str] = []
        self.protocol_errors: list[str] = []
        self.acks_for_2xx = 0
        self.oks_sent = 0
        self.bye_received = asyncio.Event()
        self.answered = asyncio.Event()
        self.ended = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.dtmf: list[ReceivedDtmf] = []
        self.offer: sip.SdpAnswer | None = None
        self._socket: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._invite_txs: dict[str, _Invite] = {}
        self._nonce = secrets.token_hex(12)
        self._tag = sip.new_tag()
        self._dialog_invite: _Invite | None = None
        self._remote_target: tuple[str, int] | None = None
        self._dtmf_pt: int | None = None
        self._heard = bytearray()
        self._audio_arrived = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._greeting_sent = asyncio.Event()
        self.refer_to: list[str] = []  # Refer-To URIs of REFERs received
        self._cseq = 0
        self._tick = 0
        self._outgoing = bytearray()
        self.answered_at: float | None = None  # time.monotonic() of the ACK
        self.greeting_done_at: float | None = None  # when the packet with its last sample went out
        self.first_audio_at: float | None = None  # the first voiced packet we heard

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SipCallee:
        loop = asyncio.get_running_loop()
        self._socket, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        self.port = self._socket.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for transport in (self._rtp, self._socket):
            if transport is not None:
                transport.close()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, message: sip.SipMessage, to: tuple[str, int]) -> None:
        if self._socket is not None and not self._socket.is_closing():
            self._socket.sendto(message.encode(), to)

    # ------------------------------------------------------------ SIP in

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return
        try:
            message = sip.parse(data)
        except sip.SipSyntaxError as exc:
            self.protocol_errors.append(f"bad SIP from {addr}: {exc}")
            return
        if not message.is_request:
            self._on_response(message)
            return
        self.requests.append(message)
        handler = {"INVITE": self._on_invite, "ACK": self._on_ack, "CANCEL": self._on_cancel,
                   "BYE": self._on_bye, "REFER": self._on_refer}.get(message.method, self._on_other)
        handler(message, addr)

    def _respond(self, tx: _Invite, status: int, *, extra=None, body: bytes = b"") -> None:
        response = sip.response_to(tx.request, status, to_tag=self._tag if status > 100 else "",
                                   reason=REASONS.get(status, ""), extra=extra, body=body)
        tx.last = response
        tx.final = status >= 200
        self._send(response, via_destination(tx.request.get_all("via")[0], tx.source))

    def _on_invite(self, invite: sip.SipMessage, source: tuple[str, int]) -> None:
        branch = invite.top_via_branch
        known = self._invite_txs.get(branch)
        if known is not None:  # a retransmission: the latest response again
            if known.last is not None:
                self._send(known.last, via_destination(invite.get_all("via")[0], source))
            return
        tx = _Invite(invite, source)
        self._invite_txs[branch] = tx
        self.invites.append(invite)
        if self.challenge is not None and not self._authorized(invite, tx):
            self._spawn(self._resend_until_ack(tx))
            return
        self._respond(tx, 100)
        self._spawn(self._proceed(tx))

    def _authorized(self, invite: sip.SipMessage, tx: _Invite) -> bool:
        asks = "www-authenticate" if self.challenge == 401 else "proxy-authenticate"
        answers = "authorization" if self.challenge == 401 else "proxy-authorization"
        value = invite.get(answers)
        if not value:
            qop = f', qop="{self.qop}"' if self.qop else ""
            challenge = (f'Digest realm="{self.realm}", nonce="{self._nonce}", '
                         f'algorithm={self.algorithm}{qop}, opaque="op4que"')
            self._respond(tx, self.challenge, extra=[(asks, challenge)])
            return False
        problem = self._check_digest(invite, value)
        if problem:
            self.auth_failures.append(problem)
            self._respond(tx, 403)
            return False
        return True

    def _check_digest(self, invite: sip.SipMessage, value: str) -> str:
        scheme, _, rest = value.partition(" ")
        if scheme.lower() != "digest":
            return f"scheme {scheme!r}"
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _AUTH_PARAM.finditer(rest)}
        for name, want in (("username", self.username), ("realm", self.realm), ("nonce", self._nonce),
                           ("uri", invite.uri), ("opaque", "op4que")):
            if params.get(name) != want:
                return f"{name} {params.get(name)!r} != {want!r}"
        digest = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[self.algorithm]

        def h(text: str) -> str:
            return digest(text.encode()).hexdigest()

        ha1 = h(f"{self.username}:{self.realm}:{self.password}")
        ha2 = h(f"INVITE:{invite.uri}")
        if self.qop:
            if params.get("qop") != "auth" or not params.get("cnonce") or not params.get("nc"):
                return "qop/cnonce/nc missing"
            expected = h(f"{ha1}:{self._nonce}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        else:
            expected = h(f"{ha1}:{self._nonce}:{ha2}")
        return "" if params.get("response") == expected else "wrong response"

    async def _proceed(self, tx: _Invite) -> None:
        await asyncio.sleep(self.ring_ms / 1000)
        if tx.final:
            return
        self._respond(tx, 180)
        if self.mode == "busy":
            self._respond(tx, 486)
        elif self.mode == "fail":
            self._respond(tx, self.fail_status)
        elif self.mode == "answer":
            await self._answer(tx)
        if tx.final and tx.last is not None and tx.last.status >= 300:
            self._spawn(self._resend_until_ack(tx))

    async def _answer(self, tx: _Invite) -> None:
        try:
            self.offer = offer = sip.parse_sdp_answer(tx.request.body)
        except sip.SipSyntaxError as exc:
            self.protocol_errors.append(f"bad SDP offer: {exc}")
            self._respond(tx, 488)
            return
        if 0 not in offer.payload_types:
            self.protocol_errors.append(f"offer without PCMU: {offer.payload_types}")
            self._respond(tx, 488)
            return
        self._dtmf_pt = next((pt for pt, enc in offer.rtpmap.items()
                              if enc.lower().startswith("telephone-event")), None)
        loop = asyncio.get_running_loop()
        self._rtp, _ = await loop.create_datagram_endpoint(lambda: _Rtp(self._on_rtp),
                                                           local_addr=(self.host, 0))
        rtp_port = self._rtp.get_extra_info("sockname")[1]
        codecs = [(0, "PCMU/8000")] + ([(self._dtmf_pt, "telephone-event/8000")] if self._dtmf_pt else [])
        body = sip.sdp_offer(address=self.host, port=rtp_port, codecs=codecs,
                             session_id=secrets.randbelow(2**31))
        contact = sip.uri_of(tx.request.get("to"))
        contact = f"<sip:{sip.uri_user(contact) or 'callee'}@{self.host}:{self.port}>"
        self._respond(tx, 200, extra=[("contact", contact), ("content-type", "application/sdp")],
                      body=body)
        self.oks_sent += 1
        self._dialog_invite = tx
        self._remote_target = sip.uri_host_port(sip.uri_of(tx.request.get("contact")))
        self.answered.set()
        self._spawn(self._resend_until_ack(tx))

    async def _resend_until_ack(self, tx: _Invite) -> None:
        """§13.3.1.4 for a 2xx, §17.2.1 timer G for an error: T1 doubling to T2."""
        interval, deadline = T1, time.monotonic() + 64 * T1
        while not tx.acked.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tx.acked.wait(), interval)
            if not tx.acked.is_set() and tx.last is not None:
                if tx.last.status < 300:
                    self.oks_sent += 1
                self._send(tx.last, via_destination(tx.request.get_all("via")[0], tx.source))
            interval = min(2 * interval, T2)

    def _on_ack(self, ack: sip.SipMessage, source: tuple[str, int]) -> None:
        tx = self._invite_txs.get(ack.top_via_branch)
        if tx is not None and tx.last is not None and tx.last.status >= 300:
            tx.acked.set()  # the ACK of an error response shares the INVITE's branch
            return
        dialog = self._dialog_invite
        if dialog is None or sip.param(ack.get("to"), "tag") != self._tag:
            self.protocol_errors.append("ACK matching no INVITE")
            return
        if ack.cseq[0] != dialog.request.cseq[0]:
            self.protocol_errors.append(f"ACK CSeq {ack.cseq[0]} != INVITE {dialog.request.cseq[0]}")
        self.acks_for_2xx += 1
        if not dialog.acked.is_set():
            dialog.acked.set()
            self.answered_at = time.monotonic()
            self._spawn(self._speak())

    def _on_cancel(self, cancel: sip.SipMessage, source: tuple[str, int]) -> None:
        self._send(sip.response_to(cancel, 200), via_destination(cancel.get_all("via")[0], source))
        tx = self._invite_txs.get(cancel.top_via_branch)
        self.cancelled.set()
        if tx is None or tx.final:
            return
        if self.mode == "answer_despite_cancel":
            self._spawn(self._answer(tx))  # the 2xx crosses the CANCEL
            return
        self._respond(tx, 487)
        self._spawn(self._resend_until_ack(tx))
        self.ended.set()

    def _on_bye(self, bye: sip.SipMessage, source: tuple[str, int]) -> None:
        ok = sip.param(bye.get("to"), "tag") == self._tag
        self._send(sip.response_to(bye, 200 if ok else 481), via_destination(bye.get_all("via")[0], source))
        if ok:
            self.bye_received.set()
            self.ended.set()

    def _on_other(self, request: sip.SipMessage, source: tuple[str, int]) -> None:
        status = 200 if request.method in ("INFO", "NOTIFY", "OPTIONS", "UPDATE") else 501
        self._send(sip.response_to(request, status), via_destination(request.get_all("via")[0], source))

    def _on_response(self, response: sip.SipMessage) -> None:
        self.requests.append(response)  # the answer to our BYE; nothing else is sent by us

    # ------------------------------------------------------------ our requests

    async def _request(self, method: str, extra: list[tuple[str, str]] | None = None,
                       body: bytes = b"") -> None:
        """A request in the dialog, sent three times T1 apart (the platform answers
        duplicates from its transaction, as a UDP client transaction would expect)."""
        tx = self._dialog_invite
        if tx is None or self._remote_target is None:
            return
        self._cseq += 1
        invite = tx.request
        headers = [("via", f"SIP/2.0/UDP {self.host}:{self.port};branch={sip.new_branch()};rport"),
                   ("max-forwards", "70"), ("from", f"{invite.get('to')};tag={self._tag}"),
                   ("to", invite.get("from")), ("call-id", invite.get("call-id")),
                   ("cseq", f"{self._cseq} {method}"), *(extra or [])]
        request = sip.SipMessage(method=method, uri=sip.uri_of(invite.get("contact")),
                                 headers=headers, body=body)
        for _ in range(3):
            self._send(request, self._remote_target)
            await asyncio.sleep(T1)

    async def hang_up(self) -> None:
        """Our BYE in the dialog."""
        if self._dialog_invite is None or self.ended.is_set():
            return
        self.ended.set()
        await self._request("BYE")

    def _on_refer(self, refer: sip.SipMessage, source: tuple[str, int]) -> None:
        """RFC 3515: 202, then a NOTIFY saying the transfer target answered (200)."""
        self.refer_to.append(sip.uri_of(refer.get("refer-to")))
        self._send(sip.response_to(refer, 202), via_destination(refer.get_all("via")[0], source))
        self._spawn(self._request(
            "NOTIFY", [("event", "refer"), ("subscription-state", "terminated;reason=noresource"),
                       ("content-type", "message/sipfrag;version=2.0")], b"SIP/2.0 200 OK\r\n"))

    def say(self, pcm16_8k: bytes) -> None:
        """Speak ``pcm16_8k`` into the call from now on (after anything still queued)."""
        position = self._tick * 320
        if len(self._outgoing) < position:
            self._outgoing += bytes(position - len(self._outgoing))
        self._outgoing += pcm16_8k

    # ------------------------------------------------------------ media

    async def _speak(self) -> None:
        """Paced PCMU from answer to end: silence, the greeting after its delay, silence."""
        assert self.offer is not None and self._rtp is not None
        target = (self.offer.address, self.offer.port)
        ssrc, seq, ts = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        self._outgoing = bytearray(self.greeting_delay_ms * 16) + self.greeting
        pcm = bytes(self._outgoing)  # the greeting; ``say`` adds to what goes out later
        t0, tick = time.monotonic(), 0
        while not self.ended.is_set():
            self._tick = tick
            chunk = bytes(self._outgoing[tick * 320:(tick + 1) * 320]).ljust(320, b"\0")
            if tick * 320 >= len(pcm):
                self._greeting_sent.set()
                if self.hang_up_after_s is not None and \
                        (tick * 320 - len(pcm)) / 16000 >= self.hang_up_after_s:
                    await self.hang_up()
                    break
            packet = sip.RtpPacket(0, seq, ts, ssrc, audioop.lin2ulaw(chunk, 2), marker=tick == 0)
            if not self._rtp.is_closing():
                self._rtp.sendto(packet.encode(), target)
            if self.greeting_done_at is None and (tick + 1) * 320 >= len(pcm):
                self.greeting_done_at = time.monotonic()  # the greeting's last sample went out
            seq, ts, tick = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF, tick + 1
            await asyncio.sleep(max(0.0, t0 + tick * 0.02 - time.monotonic()))

    def _on_rtp(self, data: bytes) -> None:
        try:
            packet = sip.parse_rtp(data)
        except sip.SipSyntaxError as exc:
            self.protocol_errors.append(f"bad RTP: {exc}")
            return
        if self._dtmf_pt is not None and packet.payload_type == self._dtmf_pt:
            try:
                digit, end, duration = sip.parse_dtmf(packet.payload)
            except sip.SipSyntaxError as exc:
                self.protocol_errors.append(str(exc))
                return
            self.dtmf.append(ReceivedDtmf(digit, end, duration, packet.timestamp, packet.marker))
            return
        if packet.payload_type != 0:
            self.protocol_errors.append(f"RTP payload type {packet.payload_type} not in the answer")
            return
        pcm = audioop.ulaw2lin(packet.payload, 2)
        self._heard += pcm
        if audioop.rms(pcm, 2) > SILENT_RMS:
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
            self._audio_arrived.set()

    def digits_heard(self) -> str:
        """One digit per key press: the first end packet of each event timestamp."""
        seen: list[tuple[int, str]] = []
        for event in self.dtmf:
            if event.end and (event.timestamp, event.digit) not in seen:
                seen.append((event.timestamp, event.digit))
        return "".join(digit for _, digit in seen)

    def heard_pcm(self) -> bytes:
        return bytes(self._heard)

    async def wait_answered(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self.answered.wait()

    async def wait_for_audio(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._audio_arrived.wait()

    async def wait_greeting_sent(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._greeting_sent.wait()


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, on_packet) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr) -> None:
        self._on_packet(data)
