"""One answered SIP call, as ``CallAudio`` for the bridge, and its dialog's life.

The server (``server.py``) answers the INVITE and hands the call here; from then
on this object owns the dialog: the caller's ACK, BYE, re-INVITE/UPDATE (session
refreshes and hold, answered with the same SDP or the mirrored direction), NOTIFYs
about our REFER, and our own BYE and REFER. Audio goes through the ``RtpSession``
(the pacer is ours, so ``clear`` takes effect at once).

The bridge learns that the call ended from ``events()`` ending with
``StreamStopped``: the caller's BYE, the media timeout (``end_reason`` then says
``media_timeout``), a missed session refresh, or a 2xx never ACKed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from enum import StrEnum
from typing import Protocol

from agentplatform.audio.amd import MachineDetector
from agentplatform.carriers.base import (
    CallAudio, CallInfo, CarrierEvent, Dtmf, InboundAudio, MarkPlayed, StreamStopped,
)
from agentplatform.carriers.dialing import AnsweringMachine
from agentplatform.carriers.dtmf import validate_dtmf
from agentplatform.carriers.sip.dialog import (
    Dialog, DialogError, DialogState, SessionTimerOffer, SessionWatch, negotiate_session_timer,
    we_may_send,
)
from agentplatform.carriers.sip.messages import (
    SipRequest, SipResponse, build_message, format_uri, parse_name_addr, response_to,
)
from agentplatform.carriers.sip.rtp import FRAME_MS
from agentplatform.carriers.sip.transactions import (
    AnswerRetransmitter, InviteServerTransaction, NonInviteServerTransaction, Timers,
)
from agentplatform.errors import CarrierError

log = logging.getLogger(__name__)

CARRIER = "sip"
HANGUP_MARK = "\x00sip-hangup"  # our own mark: the goodbye has gone out on the wire
GOODBYE_DRAIN_SECONDS = 10.0
TRANSFER_NOTIFY_SECONDS = 60.0  # the transfer target rings before its NOTIFY 200 arrives
MEDIA_TIMEOUT = "media_timeout"
CALLER_HUNG_UP = "caller_hung_up"


class TransferFailed(CarrierError):
    """The REFER was refused, or its NOTIFY reported failure or never came; the
    caller is still on the line with us."""


class Media(Protocol):
    """What a call needs of its media (``media.RtpSession``)."""

    local_port: int
    timed_out: asyncio.Event
    malformed_counts: Mapping[str, int]

    def events(self) -> AsyncIterator[InboundAudio | Dtmf | MarkPlayed]: ...
    def play(self, ulaw: bytes) -> None: ...
    def mark(self, name: str) -> None: ...
    def clear(self) -> object: ...
    def set_hold(self, sending: bool) -> None: ...
    async def send_dtmf(self, digits: str) -> None: ...
    def set_remote(self, addr: tuple[str, int] | None) -> None: ...
    async def close(self) -> None: ...


class Signaling(Protocol):
    """What a call needs of the server: a clock, our address, sending, SDP."""

    timers: Timers
    via: tuple[str, int]

    def send_to(self, data: bytes, addr: tuple[str, int]) -> None: ...

    def request(self, request: SipRequest, to: tuple[str, int]) -> asyncio.Future[SipResponse | None]:
        """Send ``request`` in a client transaction; the future holds the final
        response, or ``None`` on timeout."""

    def answer_sdp(self, offer: bytes, *, local_port: int, session_id: int, version: int): ...

    def call_over(self, call: SipCallAudio) -> None: ...


class CallState(StrEnum):
    ANSWERED = "answered"  # 200 sent, waiting for the ACK
    LIVE = "live"
    ENDED = "ended"


class SipCallAudio(CallAudio):
    """An answered SIP call. ``call_id`` is the SIP Call-ID."""

    mark_lead_ms = float(FRAME_MS)  # the pacer reports a mark as its last frame goes out

    def __init__(self, *, info: CallInfo, dialog: Dialog, media: Media, signaling: Signaling,
                 sdp: bytes, session_id: int, session_timer: SessionTimerOffer | None,
                 detector: MachineDetector | None = None) -> None:
        self.info = info
        self._detector = detector
        self.dialog = dialog
        self.media = media
        self.state = CallState.ANSWERED
        self.end_reason = ""
        self.went_live = False
        self.signaling_counts: Counter[str] = Counter()
        self._signaling = signaling
        self._sdp = sdp
        self._session_id = session_id
        self._version = 1
        self._queue: asyncio.Queue[CarrierEvent] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._retransmitter: AnswerRetransmitter | None = None
        self._watch = SessionWatch(signaling.timers, self._on_session_expired)
        self._watch.refreshed(session_timer)
        self._refer_result: asyncio.Future[int] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._pump = asyncio.ensure_future(self._pump_media())
        self._media_watch = asyncio.ensure_future(self._watch_media())

    @property
    def malformed_counts(self) -> Mapping[str, int]:  # type: ignore[override]
        return self.media.malformed_counts

    # ------------------------------------------------------------ answer and ACK

    def answered(self, ok: SipResponse, send: Callable[[bytes], None]) -> None:
        """Our 2xx went out through ``send`` (to the request's response address):
        resend it there until the ACK (§13.3.1.4)."""
        if self._retransmitter is not None:
            self._retransmitter.ack()  # an earlier answer's resends stop
        self._retransmitter = AnswerRetransmitter(build_message(ok), send, self._signaling.timers,
                                                  on_timeout=self._on_no_ack)

    def resend_answer(self) -> None:
        if self._retransmitter is not None:
            self._retransmitter.resend_now()

    def on_ack(self, ack: SipRequest) -> bool:
        """The ACK for our 2xx; True the first time (the call is then live)."""
        if self._retransmitter is not None:
            self._retransmitter.ack()
        if self.state is not CallState.ANSWERED:
            return False
        self.dialog.confirm()
        self.state = CallState.LIVE
        self.went_live = True
        return True

    def confirmed(self) -> None:
        """A call we placed: the callee's 2xx arrived and we ACKed it, so the call is
        live from our side at once (no ACK to wait for)."""
        if self.state is CallState.ANSWERED:
            self.dialog.confirm()
            self.state = CallState.LIVE
            self.went_live = True

    def _on_no_ack(self) -> None:
        log.warning("call %s: no ACK for our 200 within 32 s; ending it", self.info.call_id)
        self._end_by_us("no_ack")

    # ------------------------------------------------------------ requests from the caller

    def _accepted(self, request: SipRequest, tx: NonInviteServerTransaction) -> bool:
        """Answer an in-dialog request: 200 when the dialog takes it (CSeq order, tags),
        else the dialog's refusal; True when the request is to be acted on."""
        try:
            self.dialog.accept_remote(request)
        except DialogError as exc:
            tx.respond(response_to(request, exc.status, exc.reason))
            return False
        tx.respond(response_to(request, 200))
        return True

    def on_bye(self, bye: SipRequest, tx: NonInviteServerTransaction) -> None:
        if not self._accepted(bye, tx):
            return
        self._finish(CALLER_HUNG_UP)

    def on_refresh(self, request: SipRequest,
                   tx: InviteServerTransaction | NonInviteServerTransaction,
                   send: Callable[[bytes], None]) -> None:
        """A re-INVITE or UPDATE: a session refresh, hold or resume, or a new address."""
        try:
            self.dialog.accept_remote(request)
            timer = negotiate_session_timer(request)
            if request.body:
                self._apply_offer(request.body)
        except DialogError as exc:
            tx.respond(response_to(request, exc.status, exc.reason))
            return
        except ValueError as exc:  # sdp.SdpError: 488 no common codec, 400 malformed
            status = getattr(exc, "status", 488)
            self.signaling_counts["bad_reoffer"] += 1
            tx.respond(response_to(request, status, None))
            log.info("call %s: re-offer refused (%s)", self.info.call_id, exc)
            return
        self._watch.refreshed(timer)
        ok = response_to(request, 200, body=self._sdp, content_type="application/sdp")
        ok.headers.add("Contact", self.dialog.local_contact)
        for name, value in timer.headers() if timer else ():
            ok.headers.add(name, value)
        tx.respond(ok)
        if isinstance(tx, InviteServerTransaction):
            self.answered(ok, send)

    def _apply_offer(self, offer: bytes) -> None:
        answer = self._signaling.answer_sdp(offer, local_port=self.media.local_port,
                                            session_id=self._session_id, version=self._version)
        if answer.sdp != self._sdp:  # RFC 3264 §8: a changed SDP carries a new version
            self._version += 1
            answer = self._signaling.answer_sdp(offer, local_port=self.media.local_port,
                                                session_id=self._session_id, version=self._version)
        self._sdp = answer.sdp
        self.media.set_remote(answer.remote_rtp)
        self.media.set_hold(we_may_send(answer.direction))

    def on_notify(self, notify: SipRequest, tx: NonInviteServerTransaction) -> None:
        """Progress of our REFER (RFC 3515): a ``message/sipfrag`` status line."""
        if not self._accepted(notify, tx):
            return
        status = _sipfrag_status(notify.body)
        if status is None:
            self.signaling_counts["bad_sipfrag"] += 1
            return
        if status >= 200 and self._refer_result is not None and not self._refer_result.done():
            self._refer_result.set_result(status)

    def on_info(self, request: SipRequest, tx: NonInviteServerTransaction) -> None:
        self._accepted(request, tx)

    # ------------------------------------------------------------ CallAudio

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, StreamStopped):
                return

    async def send_audio(self, ulaw: bytes) -> None:
        if self.state is not CallState.ENDED:
            self.media.play(ulaw)

    async def send_mark(self, name: str) -> None:
        if self.state is not CallState.ENDED:
            self.media.mark(name)

    async def clear(self) -> None:
        if self.state is not CallState.ENDED:
            self.media.clear()

    async def send_dtmf(self, digits: str) -> None:
        """RFC 4733 telephone-events in the RTP stream, between audio frames; returns
        once they went out. ``BadDtmf`` for a bad string; ``CarrierError`` when the
        call is not live or the far end accepted no telephone-event."""
        keys = validate_dtmf(digits)
        if self.state is not CallState.LIVE:
            raise CarrierError(f"call is {self.state}, cannot send DTMF")
        await self.media.send_dtmf(keys)

    async def hang_up(self, say: str | None = None) -> None:
        """Our BYE, once the queued goodbye has gone out on the wire. ``say`` cannot
        be spoken here (no voice of our own); it is logged."""
        if say:
            log.info("call %s: hanging up without speaking %r (no carrier voice on SIP)",
                     self.info.call_id, say)
        if self.state is CallState.ENDED:
            return
        self._drained.clear()
        self.media.mark(HANGUP_MARK)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), GOODBYE_DRAIN_SECONDS)
        self._end_by_us("")

    async def transfer(self, number: str) -> None:
        """REFER the caller to ``number`` (RFC 3515), then BYE once its NOTIFY says
        the target answered. Raises ``TransferFailed`` — with the caller still on
        the line — when the REFER is refused or no NOTIFY 2xx comes in time."""
        if self.state is not CallState.LIVE:
            raise TransferFailed(f"call is {self.state}, cannot transfer")
        target = number if number.split(":", 1)[0] in ("sip", "sips", "tel") else self._trunk_uri(number)
        loop = asyncio.get_running_loop()
        self._refer_result = loop.create_future()
        refer = self.dialog.new_request(
            "REFER", via_host=self._signaling.via[0], via_port=self._signaling.via[1],
            extra=[("Refer-To", f"<{target}>"), ("Referred-By", self._referred_by())])
        response = await self._signaling.request(refer, self.dialog.next_hop())
        if response is None or not 200 <= response.status < 300:
            what = "no answer" if response is None else f"{response.status} {response.reason}"
            raise TransferFailed(f"REFER to {target} refused: {what}")
        try:
            status = await asyncio.wait_for(asyncio.shield(self._refer_result),
                                            TRANSFER_NOTIFY_SECONDS)
        except TimeoutError:
            raise TransferFailed(f"no final NOTIFY for the transfer to {target}") from None
        if not 200 <= status < 300:
            raise TransferFailed(f"transfer to {target} failed: {status}")
        self._end_by_us("")

    def _trunk_uri(self, number: str) -> str:
        """A number sent back to the trunk it came from: its host and port."""
        target = self.dialog.remote_target
        port = f":{target.port}" if target.port else ""
        return f"sip:{number}@{target.host}{port}"

    def _referred_by(self) -> str:
        return f"<{format_uri(parse_name_addr(self.dialog.local_uri).uri)}>"

    async def close(self) -> None:
        """The bridge is done with the call: our BYE if the caller is still there."""
        if self.state is not CallState.ENDED:
            self._end_by_us("")
        await self.media.close()

    # ------------------------------------------------------------ endings

    def _end_by_us(self, reason: str) -> None:
        """Send our BYE (if the dialog ever confirmed or got a 2xx) and finish."""
        if self.state is CallState.ENDED:
            return
        if self.dialog.state is not DialogState.TERMINATED:
            bye = self.dialog.new_request("BYE", via_host=self._signaling.via[0],
                                          via_port=self._signaling.via[1])
            self._signaling.request(bye, self.dialog.next_hop())
        self._finish(reason)

    def _stopped(self) -> StreamStopped:
        """How the bridge hears that the line ended: the caller's BYE is a hang-up; a
        dead line is ``media_timeout``; a failure of the signalling is a carrier error."""
        if self.end_reason in ("", CALLER_HUNG_UP):
            return StreamStopped()
        if self.end_reason == MEDIA_TIMEOUT:
            return StreamStopped(reason=MEDIA_TIMEOUT,
                                 detail="no RTP from the caller for the media timeout")
        return StreamStopped(reason="carrier_error", detail=f"SIP: {self.end_reason}")

    def _finish(self, reason: str) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.end_reason = reason or self.end_reason
        self.dialog.terminate()
        self._watch.stop()
        if self._retransmitter is not None:
            self._retransmitter.ack()  # stop resending; the call is over
        self._media_watch.cancel()
        self._queue.put_nowait(self._stopped())
        if self._refer_result is not None and not self._refer_result.done():
            self._refer_result.set_result(487)
        self._spawn(self.media.close())
        self._signaling.call_over(self)

    def _on_session_expired(self) -> None:
        log.info("call %s: the session refresh did not come; ending the call", self.info.call_id)
        self._end_by_us("session_expired")

    async def _watch_media(self) -> None:
        await self.media.timed_out.wait()
        log.info("call %s: no RTP from the caller; ending the call", self.info.call_id)
        self._end_by_us(MEDIA_TIMEOUT)

    async def _pump_media(self) -> None:
        async for event in self.media.events():
            if isinstance(event, MarkPlayed) and event.name == HANGUP_MARK:
                self._drained.set()
                continue
            if self.state is CallState.ENDED:
                continue
            if self._detector is not None and isinstance(event, InboundAudio):
                for decision in self._detector.feed(event.audio):
                    self._queue.put_nowait(AnsweringMachine(decision.verdict, decision.greeting_ended,
                                                            decision.cue))
                if self._detector.finished:
                    self._detector = None  # nothing more to decide: no cost per frame
            self._queue.put_nowait(event)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _sipfrag_status(body: bytes) -> int | None:
    """The status code of a ``message/sipfrag`` body such as ``SIP/2.0 200 OK``."""
    line = body.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit() and len(parts[1]) == 3:
        return int(parts[1])
    return None


def call_info(invite: SipRequest, *, agent: str, local_tag: str, to_number: str) -> CallInfo:
    """Who called whom: the From user is the caller, the Request-URI user the dialed number."""
    caller = parse_name_addr(invite.headers.get("From") or "").uri.user
    return CallInfo(call_id=invite.headers.get("Call-ID") or "", stream_id=local_tag,
                     carrier=CARRIER, from_number=caller, to_number=to_number, agent=agent)

