"""RFC 3261 §17 transactions over UDP, as pure state machines.

No sockets and no sleeping here: a transaction is given ``send`` (bytes out, to
wherever the owner decides) and ``timers`` (anything with ``call_later(delay, fn)``
returning a handle with ``cancel()`` — the asyncio loop, or a fake clock in
tests). That is why the retransmission schedule can be tested exactly.

What lives here:
- ``InviteServerTransaction``: 100 Trying at once; a retransmitted INVITE gets
  the last response again; a final non-2xx is resent (timer G) until the ACK,
  given up at timer H; after a 2xx it stays "accepted" for 64·T1 (RFC 6026) so
  INVITE retransmissions still get the 200.
- ``AnswerRetransmitter``: the UAS core's job of resending the 2xx until the
  ACK (§13.3.1.4): T1, doubling to T2, giving up at 64·T1 (the caller sends BYE).
- ``NonInviteServerTransaction``: the final response is cached and resent to
  retransmitted requests for timer J (64·T1).
- ``InviteClientTransaction``: our INVITE when we place a call: timer A resends,
  timer B gives up, a non-2xx final is ACKed here, a 2xx handed to the dialog.
- ``NonInviteClientTransaction``: our BYE, REFER, NOTIFY, CANCEL: timer E resends
  (T1 doubling to T2), timer F (64·T1) reports a timeout.
- ``TransactionTable``: matching by branch and method (§17.1.3, §17.2.3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from agentplatform.carriers.sip.messages import (
    Headers, SipRequest, SipResponse, build_message, cseq, response_to, top_via,
)

log = logging.getLogger(__name__)

T1 = 0.5  # RTT estimate (s)
T2 = 4.0  # the longest retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # the longest a message stays in the network
TIMEOUT = 64 * T1  # timers B, F, H, J, L: 32 s


class Handle(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """What a transaction needs of a clock: ``asyncio.AbstractEventLoop`` fits."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...


Send = Callable[[bytes], None]


class TxState(StrEnum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"  # RFC 6026: a 2xx was sent; absorb INVITE retransmissions
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TransactionError(RuntimeError):
    """A transaction was asked to do something its state does not allow."""


def transaction_key(msg: SipRequest | SipResponse) -> tuple[str, str, str]:
    """(branch, sent-by, method): the §17.2.3 server key, also the §17.1.3 client
    key. ACK and CANCEL match the INVITE they belong to only through the caller
    choosing which method to look up (``ACK`` → ``INVITE``)."""
    via = top_via(msg)
    branch = via.branch or ""
    sent_by = f"{via.host.lower()}:{via.port or 5060}"
    _, method = cseq(msg.headers)
    return branch, sent_by, method


class _Timed:
    """The timer bookkeeping every transaction shares."""

    def __init__(self, timers: Timers, on_terminated: Callable[[], None] | None) -> None:
        self._timers = timers
        self._handles: dict[str, Handle] = {}
        self._on_terminated = on_terminated
        self.state = TxState.TRYING

    def _start(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._stop(name)
        self._handles[name] = self._timers.call_later(delay, fn)

    def _stop(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _move(self, expected: tuple[TxState, ...], new: TxState) -> None:
        if self.state not in expected:
            raise TransactionError(f"transaction expected {[s.value for s in expected]}, got {self.state}")
        self.state = new
        if new is TxState.TERMINATED:
            for name in list(self._handles):
                self._stop(name)
            if self._on_terminated is not None:
                self._on_terminated()

    def terminate(self) -> None:
        if self.state is not TxState.TERMINATED:
            self._move(tuple(TxState), TxState.TERMINATED)


class InviteServerTransaction(_Timed):
    """§17.2.1 with RFC 6026's Accepted state. Sends 100 Trying when created (§17.2.1:
    at once, so the caller stops resending while we look the number up)."""

    def __init__(self, invite: SipRequest, send: Send, timers: Timers, *,
                 on_terminated: Callable[[], None] | None = None,
                 on_no_ack: Callable[[], None] | None = None, send_trying: bool = True) -> None:
        super().__init__(timers, on_terminated)
        self.request = invite
        self._send = send
        self._on_no_ack = on_no_ack
        self.last_response: SipResponse | None = None
        self._last_bytes = b""
        self.state = TxState.PROCEEDING
        if send_trying:  # not for a refusal known at once (a peer not allowed): less to amplify
            self.respond(response_to(invite, 100, "Trying"))

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, response: SipResponse) -> None:
        if self.state is not TxState.PROCEEDING:
            raise TransactionError(f"INVITE transaction already answered ({self.state})")
        self.last_response = response
        self._last_bytes = build_message(response)
        self._send(self._last_bytes)
        if response.status < 200:
            return
        if response.status < 300:
            self._move((TxState.PROCEEDING,), TxState.ACCEPTED)
            self._start("L", TIMEOUT, self.terminate)
        else:
            self._move((TxState.PROCEEDING,), TxState.COMPLETED)
            self._start("G", T1, lambda: self._timer_g(T1))
            self._start("H", TIMEOUT, self._timer_h)

    def receive_request(self, request: SipRequest) -> None:
        """A retransmitted INVITE, or the ACK for a non-2xx final response."""
        if request.method == "ACK":
            if self.state is TxState.COMPLETED:
                self._move((TxState.COMPLETED,), TxState.CONFIRMED)
                self._stop("G")
                self._stop("H")
                self._start("I", T4, self.terminate)
            return
        if self.state in (TxState.PROCEEDING, TxState.ACCEPTED, TxState.COMPLETED):
            self._send(self._last_bytes)

    def _timer_g(self, interval: float) -> None:
        if self.state is not TxState.COMPLETED:
            return
        self._send(self._last_bytes)
        nxt = min(interval * 2, T2)
        self._start("G", nxt, lambda: self._timer_g(nxt))

    def _timer_h(self) -> None:
        log.info("no ACK for %s to INVITE %s", self.last_response and self.last_response.status,
                 self.request.headers.get("Call-ID"))
        if self._on_no_ack is not None:
            self._on_no_ack()
        self.terminate()


class AnswerRetransmitter(_Timed):
    """§13.3.1.4: the UAS core resends its 2xx (already sent once) at T1, 2·T1, …
    capped at T2, until ``ack()``; at 64·T1 without one it calls ``on_timeout``
    (the dialog is then ended with a BYE)."""

    def __init__(self, response: bytes, send: Send, timers: Timers, *,
                 on_timeout: Callable[[], None]) -> None:
        super().__init__(timers, None)
        self._bytes = response
        self._send = send
        self._on_timeout = on_timeout
        self.state = TxState.PROCEEDING
        self._start("resend", T1, lambda: self._resend(T1))
        self._start("give_up", TIMEOUT, self._give_up)

    @property
    def acked(self) -> bool:
        return self.state is TxState.CONFIRMED

    def ack(self) -> None:
        if self.state is TxState.PROCEEDING:
            self._move((TxState.PROCEEDING,), TxState.CONFIRMED)
            self._stop("resend")
            self._stop("give_up")

    def resend_now(self) -> None:
        """An INVITE retransmission arrived after the transaction ended: answer it."""
        if self.state is TxState.PROCEEDING:
            self._send(self._bytes)

    def _resend(self, interval: float) -> None:
        if self.state is not TxState.PROCEEDING:
            return
        self._send(self._bytes)
        nxt = min(interval * 2, T2)
        self._start("resend", nxt, lambda: self._resend(nxt))

    def _give_up(self) -> None:
        if self.state is not TxState.PROCEEDING:
            return
        self._move((TxState.PROCEEDING,), TxState.TERMINATED)
        self._on_timeout()


class NonInviteServerTransaction(_Timed):
    """§17.2.2: the final response is kept and resent to retransmissions for timer J."""

    def __init__(self, request: SipRequest, send: Send, timers: Timers, *,
                 on_terminated: Callable[[], None] | None = None) -> None:
        super().__init__(timers, on_terminated)
        self.request = request
        self._send = send
        self._last_bytes = b""
        self.last_response: SipResponse | None = None

    def respond(self, response: SipResponse) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            raise TransactionError(f"{self.request.method} transaction already answered")
        self.last_response = response
        self._last_bytes = build_message(response)
        self._send(self._last_bytes)
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return
        self._move((TxState.TRYING, TxState.PROCEEDING), TxState.COMPLETED)
        self._start("J", TIMEOUT, self.terminate)

    def receive_request(self, request: SipRequest) -> None:
        if self._last_bytes and self.state in (TxState.PROCEEDING, TxState.COMPLETED):
            self._send(self._last_bytes)


class NonInviteClientTransaction(_Timed):
    """§17.1.2 over UDP. ``on_final(response)`` once with the final response, or
    ``on_final(None)`` when timer F fires first. Provisional responses go to
    ``on_provisional`` and slow the resends to T2."""

    def __init__(self, request: SipRequest, send: Send, timers: Timers, *,
                 on_final: Callable[[SipResponse | None], None],
                 on_provisional: Callable[[SipResponse], None] | None = None,
                 on_terminated: Callable[[], None] | None = None) -> None:
        super().__init__(timers, on_terminated)
        self.request = request
        self._send = send
        self._bytes = build_message(request)
        self._on_final = on_final
        self._on_provisional = on_provisional
        self.final: SipResponse | None = None
        self._send(self._bytes)
        self._start("E", T1, lambda: self._timer_e(T1))
        self._start("F", TIMEOUT, self._timer_f)

    def _timer_e(self, interval: float) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return
        self._send(self._bytes)
        nxt = T2 if self.state is TxState.PROCEEDING else min(interval * 2, T2)
        self._start("E", nxt, lambda: self._timer_e(nxt))

    def _timer_f(self) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return
        self.terminate()
        self._on_final(None)

    def receive_response(self, response: SipResponse) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return  # a retransmitted final response: already reported
        if response.status < 200:
            self.state = TxState.PROCEEDING
            if self._on_provisional is not None:
                self._on_provisional(response)
            return
        self.final = response
        self._move((TxState.TRYING, TxState.PROCEEDING), TxState.COMPLETED)
        self._stop("E")
        self._stop("F")
        self._start("K", T4, self.terminate)
        self._on_final(response)


class InviteClientTransaction(_Timed):
    """§17.1.1 over UDP, with RFC 6026's Accepted state: our INVITE.

    Timer A resends the INVITE (T1, doubling) until any response; timer B (64·T1)
    without one calls ``on_timeout``. A provisional response goes to
    ``on_provisional``. A non-2xx final is ACKed here with the INVITE's branch
    (§17.1.1.3), reported once to ``on_final``, and its retransmissions get the ACK
    again until timer D. A 2xx goes to ``on_final`` too — its ACK is the dialog's
    job (§13.2.2.4) — and every retransmission of it to ``on_2xx_again`` for 64·T1
    (timer M), so the ACK can be resent.
    """

    def __init__(self, invite: SipRequest, send: Send, timers: Timers, *,
                 on_final: Callable[[SipResponse], None],
                 on_timeout: Callable[[], None],
                 on_provisional: Callable[[SipResponse], None] | None = None,
                 on_2xx_again: Callable[[SipResponse], None] | None = None,
                 on_terminated: Callable[[], None] | None = None) -> None:
        super().__init__(timers, on_terminated)
        self.request = invite
        self._send = send
        self._bytes = build_message(invite)
        self._on_final = on_final
        self._on_timeout = on_timeout
        self._on_provisional = on_provisional
        self._on_2xx_again = on_2xx_again
        self._ack_bytes = b""
        self.state = TxState.TRYING  # "Calling" in §17.1.1
        self._send(self._bytes)
        self._start("A", T1, lambda: self._timer_a(T1))
        self._start("B", TIMEOUT, self._timer_b)

    def _timer_a(self, interval: float) -> None:
        if self.state is not TxState.TRYING:
            return
        self._send(self._bytes)
        self._start("A", interval * 2, lambda: self._timer_a(interval * 2))

    def _timer_b(self) -> None:
        if self.state is not TxState.TRYING:
            return
        self.terminate()
        self._on_timeout()

    def receive_response(self, response: SipResponse) -> None:
        status = response.status
        if self.state in (TxState.TRYING, TxState.PROCEEDING) and status < 200:
            self.state = TxState.PROCEEDING
            self._stop("A")
            self._stop("B")
            if self._on_provisional is not None:
                self._on_provisional(response)
        elif self.state in (TxState.TRYING, TxState.PROCEEDING) and status < 300:
            self._move((TxState.TRYING, TxState.PROCEEDING), TxState.ACCEPTED)
            self._stop("A")
            self._stop("B")
            self._start("M", TIMEOUT, self.terminate)
            self._on_final(response)
        elif self.state in (TxState.TRYING, TxState.PROCEEDING):
            self._move((TxState.TRYING, TxState.PROCEEDING), TxState.COMPLETED)
            self._stop("A")
            self._stop("B")
            self._ack_bytes = build_message(ack_for_error(self.request, response))
            self._send(self._ack_bytes)
            self._start("D", TIMEOUT, self.terminate)
            self._on_final(response)
        elif self.state is TxState.ACCEPTED and 200 <= status < 300:
            if self._on_2xx_again is not None:
                self._on_2xx_again(response)
        elif self.state is TxState.COMPLETED and status >= 300:
            self._send(self._ack_bytes)  # our ACK was lost: the final came again


def ack_for_error(invite: SipRequest, response: SipResponse) -> SipRequest:
    """§17.1.1.3: the ACK of a non-2xx final response — the INVITE's Request-URI,
    top Via (so its branch), From, Call-ID, Route and CSeq number; the response's To."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.headers.get("Call-ID") or "")
    number, _ = cseq(invite.headers)
    headers.add("CSeq", f"{number} ACK")
    return SipRequest("ACK", invite.uri, headers)


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction


class TransactionTable:
    """Live transactions by key; each removes itself when it terminates."""

    def __init__(self) -> None:
        self.server: dict[tuple[str, str, str], ServerTransaction] = {}
        self.client: dict[tuple[str, str, str], ClientTransaction] = {}

    def find_server(self, request: SipRequest) -> ServerTransaction | None:
        branch, sent_by, method = transaction_key(request)
        if not branch.startswith("z9hG4bK"):
            return None  # RFC 2543 peers are not matched (§17.2.3's old rules not kept)
        if method == "ACK":
            method = "INVITE"
        return self.server.get((branch, sent_by, method))

    def invite_for_cancel(self, cancel: SipRequest) -> InviteServerTransaction | None:
        branch, sent_by, _ = transaction_key(cancel)
        tx = self.server.get((branch, sent_by, "INVITE"))
        return tx if isinstance(tx, InviteServerTransaction) else None

    def add_server(self, key: tuple[str, str, str], tx: ServerTransaction) -> None:
        self.server[key] = tx

    def remove_server(self, key: tuple[str, str, str]) -> None:
        self.server.pop(key, None)

    def find_client(self, response: SipResponse) -> ClientTransaction | None:
        return self.client.get(transaction_key(response))

    def add_client(self, key: tuple[str, str, str], tx: ClientTransaction) -> None:
        self.client[key] = tx

    def remove_client(self, key: tuple[str, str, str]) -> None:
        self.client.pop(key, None)
