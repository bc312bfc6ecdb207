"""Calls we place over the SIP trunk: the user agent client side of one INVITE.

``OutboundCall.start`` binds the call's RTP ports (the offer names them), sends
the INVITE (PCMU and telephone-event) to ``SIP_OUTBOUND_URI`` with ``{number}``
filled, and returns; what follows happens on the server's UDP socket, where the
responses arrive:

* 100/180/183 — ringing. Early media is not listened to: nothing is handed to the
  platform, so no model session is open and nothing is spent while it rings.
* 401/407 — the trunk asks who we are: one retry with ``Authorization`` /
  ``Proxy-Authorization`` (``digest.py``) and CSeq + 1. A second challenge, or a
  challenge when no credentials are set, ends the attempt as ``failed``.
* 2xx — ACK (again for each retransmitted 2xx), the RTP session is pointed at the
  answer's address, and the call is handed over like an inbound one
  (``handle_call``) with ``CallInfo.outbound`` set; from then on it is an
  ordinary ``SipCallAudio`` (BYE either way, REFER, DTMF). With answering-machine
  detection on, the local detector (``audio/amd.py``) hears the callee's frames.
* ``SIP_RING_TIMEOUT_SECONDS`` without an answer — CANCEL (once a provisional
  response came, §9.1), then the 487 → ``no_answer``. A 2xx that crosses our
  CANCEL is ACKed and hung up at once (BYE): still ``no_answer``.
* 486/600 → ``busy``; 408/480/487 → ``no_answer``; any other final → ``failed``
  with the status in the detail; no response at all (timer B) → ``failed``.

Everything that never became a call is reported once through ``dial_ended``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from agentplatform.audio.amd import MachineDetector
from agentplatform.carriers.base import CallAudio, CallInfo
from agentplatform.carriers.dialing import MachineDetection, OutboundRequest
from agentplatform.carriers.sip.call import CARRIER, Media, SipCallAudio
from agentplatform.carriers.sip.dialog import Dialog, DialogError, we_may_send
from agentplatform.carriers.sip.digest import DigestError, authorization, choose_challenge
from agentplatform.carriers.sip.messages import (
    Headers, MalformedSip, SipRequest, SipResponse, build_message, format_via, new_branch,
    new_call_id, new_tag, parse_uri, Via,
)
from agentplatform.carriers.sip.sdp import Codec, SdpError, make_offer, read_answer
from agentplatform.carriers.sip.transactions import TIMEOUT, InviteClientTransaction
from agentplatform.config import Settings
from agentplatform.errors import CarrierError

log = logging.getLogger(__name__)

PCMU = Codec(0, "PCMU")
DTMF_PAYLOAD_TYPE = 101
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, NOTIFY, INFO, REFER"
BUSY = frozenset({486, 600})
NO_ANSWER = frozenset({408, 480, 487})
_NUMBER = re.compile(r"[0-9A-Za-z+*#._-]{1,64}")


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    uri_template: str  # "sip:{number}@trunk.example:5060"
    username: str
    password: str
    from_number: str
    ring_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundConfig:
        return cls(settings.sip_outbound_uri.strip(), settings.sip_username,
                   settings.sip_password, settings.sip_from_number.strip(),
                   settings.sip_ring_timeout_seconds)

    def problem(self) -> str | None:
        """Why no call can be placed with these settings, or ``None``."""
        if not self.uri_template:
            return "SIP_OUTBOUND_URI is not set"
        if "{number}" not in self.uri_template:
            return f"SIP_OUTBOUND_URI={self.uri_template!r} has no {{number}}"
        try:
            uri = parse_uri(self.uri_template.replace("{number}", "0"))
        except MalformedSip as exc:
            return f"SIP_OUTBOUND_URI={self.uri_template!r} is not a SIP URI ({exc})"
        if uri.scheme != "sip" or not uri.host:
            return f"SIP_OUTBOUND_URI={self.uri_template!r}: expected sip:{{number}}@HOST[:PORT]"
        if self.ring_timeout_s <= 0:
            return "SIP_RING_TIMEOUT_SECONDS must be above 0"
        return None

    def target(self, number: str) -> str:
        """The Request-URI for ``number``; ``CarrierError`` for a number that is not
        one (it would otherwise be pasted into the URI)."""
        if not _NUMBER.fullmatch(number):
            raise CarrierError(f"{number!r} is not a number the SIP trunk can dial")
        return self.uri_template.replace("{number}", number)


class DialHost(Protocol):
    """The platform as a placed call needs it (``plugin.CarrierContext`` fits)."""

    def handle_call(self, audio: CallAudio) -> Awaitable[None]: ...
    def dial_ended(self, request: OutboundRequest, reason: str, detail: str = "") -> None: ...
    def dial_progress(self, request: OutboundRequest, status: str = "ringing",
                      carrier_call_id: str = "") -> None: ...


class DialSignaling(Protocol):
    """What the call needs of the SIP server (``server.SipServer``)."""

    via: tuple[str, int]
    public_address: str

    def invite(self, invite: SipRequest, to: tuple[str, int], **callbacks) -> InviteClientTransaction: ...
    def request(self, request: SipRequest, to: tuple[str, int]) -> asyncio.Future[SipResponse | None]: ...
    def send_to(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def trust_peer(self, call_id: str, host: str | None) -> None: ...
    def run_placed_call(self, call: SipCallAudio) -> None: ...


OpenMedia = Callable[[Codec, int | None, tuple[str, int] | None], Awaitable[Media]]


class OutboundCall:
    """One INVITE we send and what becomes of it (see the module docstring)."""

    def __init__(self, request: OutboundRequest, *, config: OutboundConfig,
                 signaling: DialSignaling, host: DialHost, open_media: OpenMedia) -> None:
        self.request = request
        self.config = config
        self.signaling = signaling
        self.host = host
        self._open_media = open_media
        self.uri = config.target(request.to_number)
        self.call_id = new_call_id(signaling.via[0])
        self.local_tag = new_tag()
        self.session_id = random.randint(1, 2**31)
        self.outcome: tuple[str, str] | None = None  # (reason, detail) when it never became a call
        self.call: SipCallAudio | None = None
        self.ringing = False
        self._cseq = 1
        self._authenticated = False
        self._cancel_wanted = False
        self._cancel_sent = False
        self._target: tuple[str, int] = ("", 0)
        self._media: Media | None = None
        self._offer = b""
        self._invite: SipRequest | None = None
        self._tx: InviteClientTransaction | None = None
        self._ack: tuple[bytes, tuple[str, int]] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ starting

    async def start(self) -> None:
        """Resolve the trunk, bind RTP, send the INVITE; ``CarrierError`` when it
        cannot even start (nothing is reported through ``dial_ended`` then)."""
        uri = parse_uri(self.uri)
        port = uri.port or 5060
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(uri.host.strip("[]"), port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise CarrierError(f"cannot resolve the SIP trunk {uri.host!r}: {exc}") from None
        self._target = (str(infos[0][4][0]), port)
        self._media = await self._open_media(PCMU, DTMF_PAYLOAD_TYPE, None)
        self._offer = make_offer(local_address=self.signaling.public_address,
                                 local_port=self._media.local_port, session_id=self.session_id,
                                 version=1, codecs=(PCMU,), dtmf_payload_type=DTMF_PAYLOAD_TYPE)
        self.signaling.trust_peer(self.call_id, self._target[0])
        self._send_invite(None)
        self.host.dial_progress(self.request, "ringing", self.call_id)  # the record gets the Call-ID
        self._timers.append(loop.call_later(self.config.ring_timeout_s, self._ring_timeout))
        log.info("call %s: dialing %s for agent %s (platform call %s)", self.call_id, self.uri,
                 self.request.agent, self.request.call_id)

    def _caller(self) -> str:
        return self.request.from_number or self.config.from_number or "anonymous"

    def _send_invite(self, credentials: tuple[str, str] | None) -> None:
        host, port = self.signaling.via
        headers = Headers()
        headers.add("Via", format_via(Via("UDP", host, port, {"branch": new_branch(), "rport": None})))
        headers.add("Max-Forwards", "70")
        caller = self._caller()
        headers.add("From", f"<sip:{caller}@{self.signaling.public_address}>;tag={self.local_tag}")
        headers.add("To", f"<{self.uri}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._cseq} INVITE")
        headers.add("Contact", f"<sip:{caller}@{host}:{port}>")
        headers.add("Allow", ALLOW)
        if credentials is not None:
            headers.add(*credentials)
        headers.add("Content-Type", "application/sdp")
        self._invite = SipRequest("INVITE", self.uri, headers, self._offer)
        self._tx = self.signaling.invite(
            self._invite, self._target, on_final=self._on_final, on_timeout=self._on_timer_b,
            on_provisional=self._on_provisional, on_2xx_again=self._on_2xx_again)

    # ------------------------------------------------------------ responses

    def _on_provisional(self, response: SipResponse) -> None:
        if not self.ringing:
            log.info("call %s: %d %s", self.call_id, response.status, response.reason)
        self.ringing = True
        if self._cancel_wanted and not self._cancel_sent:
            self._send_cancel()

    def _on_final(self, response: SipResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            self._answered(response)
        elif status in (401, 407) and not self._cancel_wanted:
            self._challenged(response)
        elif status in BUSY:
            self._finish("busy", f"{status} {response.reason}")
        elif status in NO_ANSWER:
            self._finish("no_answer", f"{status} {response.reason}")
        else:
            self._finish("failed", f"{status} {response.reason}")

    def _challenged(self, response: SipResponse) -> None:
        status = response.status
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        if self._authenticated:
            self._finish("failed", f"{status}: the trunk refused our credentials")
            return
        if not self.config.username:
            self._finish("failed", f"{status}: the trunk asks for authentication and "
                                   "SIP_USERNAME/SIP_PASSWORD are not set")
            return
        try:
            challenge = choose_challenge(response.headers.get_all(header))
        except DigestError as exc:
            self._finish("failed", f"{status}: {exc}")
            return
        value = authorization(challenge, method="INVITE", uri=self.uri,
                              username=self.config.username, password=self.config.password)
        self._authenticated = True
        self._cseq += 1
        answer_header = "Authorization" if status == 401 else "Proxy-Authorization"
        log.info("call %s: %d, answering the %s digest challenge", self.call_id, status,
                 challenge.algorithm)
        self._send_invite((answer_header, value))

    def _answered(self, ok: SipResponse) -> None:
        assert self._invite is not None and self._media is not None
        if self.outcome is not None or self.call is not None:
            return
        try:
            dialog = Dialog.from_2xx(self._invite, ok)
        except DialogError as exc:
            # No Contact to send ACK or BYE to: the best we can do is ACK the source.
            self._finish("failed", f"the 2xx is unusable: {exc.detail}")
            return
        self._send_ack(dialog)
        if self._cancel_wanted:
            log.info("call %s: answered as we cancelled it; hanging up", self.call_id)
            self._bye(dialog)
            self._finish("no_answer", "answered after the ring timeout; hung up")
            return
        try:
            answer = read_answer(ok.body)
        except SdpError as exc:
            self._bye(dialog)
            self._finish("failed", f"the answer's SDP is unusable: {exc.detail}")
            return
        if answer.codec.name != PCMU.name:
            self._bye(dialog)
            self._finish("failed", f"the answer chose {answer.codec.name}, not the offered PCMU")
            return
        self._cancel_timers()
        media = self._media
        media.set_remote(answer.remote_rtp)
        media.dtmf_payload_type = answer.dtmf_payload_type  # type: ignore[misc]
        media.set_hold(we_may_send(answer.direction))
        media.restart_inbound()  # type: ignore[attr-defined]
        request = self.request
        info = CallInfo(call_id=self.call_id, stream_id=self.local_tag, carrier=CARRIER,
                        from_number=self._caller(), to_number=request.to_number,
                        agent=request.agent, parameters=dict(request.params), outbound=request)
        detector = (MachineDetector() if request.machine_detection is not MachineDetection.OFF
                    else None)
        self.call = SipCallAudio(
            info=info, dialog=dialog, media=media, signaling=self.signaling,  # type: ignore[arg-type]
            sdp=self._offer, session_id=self.session_id, session_timer=None, detector=detector)
        self.call.confirmed()
        log.info("call %s: answered (%s); handing it to agent %s", self.call_id,
                 answer.codec.name, request.agent)
        self.signaling.run_placed_call(self.call)

    def _send_ack(self, dialog: Dialog) -> None:
        ack = dialog.new_request("ACK", via_host=self.signaling.via[0], via_port=self.signaling.via[1])
        self._ack = (build_message(ack), dialog.next_hop())
        self.signaling.send_to(*self._ack)

    def _on_2xx_again(self, response: SipResponse) -> None:
        if self._ack is not None:
            self.signaling.send_to(*self._ack)  # our ACK was lost: the 2xx came again

    def _bye(self, dialog: Dialog) -> None:
        bye = dialog.new_request("BYE", via_host=self.signaling.via[0], via_port=self.signaling.via[1])
        dialog.terminate()
        self.signaling.request(bye, dialog.next_hop())

    def _on_timer_b(self) -> None:
        if self._cancel_wanted and self.ringing:
            self._finish("no_answer", "no final response after CANCEL")
        else:
            self._finish("failed", "no response from the trunk to the INVITE (timer B)")

    # ------------------------------------------------------------ giving up

    def _ring_timeout(self) -> None:
        if self.outcome is not None or self.call is not None:
            return
        log.info("call %s: no answer in %.0f s; cancelling", self.call_id, self.config.ring_timeout_s)
        self._cancel_wanted = True
        if self.ringing:
            self._send_cancel()
        # else: §9.1 — a CANCEL waits for a provisional response; timer B ends it otherwise.

    def _send_cancel(self) -> None:
        """§9.1: the INVITE's Request-URI, top Via, From, To, Call-ID and CSeq number."""
        assert self._invite is not None
        self._cancel_sent = True
        source = self._invite.headers
        headers = Headers()
        headers.add("Via", source.get_all("Via")[0])
        headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            headers.add(name, source.get(name) or "")
        headers.add("CSeq", f"{self._cseq} CANCEL")
        self.signaling.request(SipRequest("CANCEL", self._invite.uri, headers), self._target)
        # The INVITE's final (487, or a 2xx that crossed) normally follows; if it never
        # does, the transaction is given up 64·T1 later (§9.1).
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(TIMEOUT, self._cancel_unanswered))

    @property
    def pending(self) -> bool:
        """Still dialing: neither handed over nor reported."""
        return self.outcome is None and self.call is None

    def abandon(self, detail: str) -> None:
        """Stop dialing (the server is shutting down): CANCEL if it rings, and report
        ``server_shutdown`` now rather than when the trunk answers the CANCEL."""
        if not self.pending:
            return
        self._cancel_wanted = True
        if self.ringing and not self._cancel_sent:
            self._send_cancel()
        self._finish("server_shutdown", detail)

    def _cancel_unanswered(self) -> None:
        if self._tx is not None:
            self._tx.terminate()
        self._finish("no_answer", "no final response after CANCEL")

    def _finish(self, reason: str, detail: str) -> None:
        if self.outcome is not None or self.call is not None:
            return
        self.outcome = (reason, detail)
        self._cancel_timers()
        self.signaling.trust_peer(self.call_id, None)
        if self._media is not None:
            task = asyncio.ensure_future(self._media.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        log.info("call %s: not connected: %s (%s)", self.call_id, reason, detail)
        self.host.dial_ended(self.request, reason, detail)

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
