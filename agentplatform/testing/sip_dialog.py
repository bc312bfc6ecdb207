"""The SIP caller's transport and dialog: UDP, transactions and in-dialog requests.

Kept apart from ``sip_caller`` (which owns the call and its media) so each stays
small. Written from RFC 3261 alone, with ``sip_wire`` for the messages:

* §17.1.2 non-INVITE client transactions: resend at T1, doubling to T2 (4 s), give
  up at 64·T1 (timer F). §17.2.2 server side: a retransmitted request gets the
  same response again.
* §18.2.2 responses go to the top Via's sent-by, or its ``received``/``rport``
  (RFC 3581).
* §12.1.2 a dialog's remote target is the 2xx's Contact, its route set the
  Record-Route reversed; §12.2.1.1 in-dialog requests carry it. §13.2.2.4 the ACK
  of a 2xx is its own transaction; §17.1.1.3 the ACK of an error reuses the INVITE's
  branch. §9.1 CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq
  number and Via.

All requests go to the one server address given (an outbound proxy, in RFC 3261's
words), whatever the remote target says, so a test's trunk address is the only one used.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from agentplatform.testing import sip_wire as sip

T2 = 4.0

RequestHandler = Callable[[sip.SipMessage, tuple[str, int]], sip.SipMessage]


class Transport(asyncio.DatagramProtocol):
    """The caller's SIP socket: sends, routes responses by branch, answers requests."""

    def __init__(self, server: tuple[str, int], lose: dict[str, int], on_request: RequestHandler,
                 on_error: Callable[[str], None], log: Callable[[str, str], None]) -> None:
        self.server = server
        self._lose = dict(lose)
        self._on_request, self._on_error, self._log = on_request, on_error, log
        self._socket: asyncio.DatagramTransport | None = None
        self._expected: dict[tuple[str, str], Callable[[sip.SipMessage], None]] = {}
        self._answered: dict[tuple[str, str, str], sip.SipMessage] = {}
        self.port = 0

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        self._socket, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self.port = self._socket.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()

    def send(self, message: sip.SipMessage, to: tuple[str, int] | None = None) -> None:
        kind = message.method or str(message.status)
        if self._lose.get(kind, 0) > 0:
            self._lose[kind] -= 1
            self._log("lost", kind)
            return
        if self._socket is not None and not self._socket.is_closing():
            self._socket.sendto(message.encode(), to or self.server)

    def expect(self, request: sip.SipMessage, on_response: Callable[[sip.SipMessage], None]) -> None:
        """Route responses to ``request`` by branch and CSeq method (§17.1.3): a CANCEL
        shares its INVITE's branch."""
        self._expected[(request.top_via_branch, request.method)] = on_response

    async def request(self, message: sip.SipMessage, t1: float) -> sip.SipMessage | None:
        """A non-INVITE client transaction: the final response, or None at timer F."""
        final: asyncio.Future[sip.SipMessage] = asyncio.get_running_loop().create_future()

        def on_response(response: sip.SipMessage) -> None:
            if response.status >= 200 and not final.done():
                final.set_result(response)

        self.expect(message, on_response)
        interval, deadline = t1, time.monotonic() + 64 * t1
        while time.monotonic() < deadline:
            self.send(message)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(interval, deadline - time.monotonic())):
                    return await asyncio.shield(final)
            interval = min(2 * interval, T2)
        self._log("timeout", f"timer F: no final response to {message.method}")
        return None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive CRLFs (RFC 5626 §4.4.1)
        try:
            message = sip.parse(data)
        except sip.SipSyntaxError as exc:
            self._on_error(f"bad SIP from {addr}: {exc}")
            return
        if message.is_request:
            self._answer(message, addr)
            return
        handler = self._expected.get((message.top_via_branch, message.cseq[1]))
        if handler is None:
            self._on_error(f"response {message.status} to a transaction we never started "
                           f"(branch {message.top_via_branch!r})")
            return
        handler(message)

    def _answer(self, request: sip.SipMessage, addr: tuple[str, int]) -> None:
        key = (request.top_via_branch, request.get("cseq"), request.method)
        response = self._answered.get(key)
        if response is None:
            response = self._on_request(request, addr)
            if response is request:  # ACK: nothing to send
                return
            self._answered[key] = response
        try:
            self.send(response, via_destination(request.get_all("via")[0], addr))
        except sip.SipSyntaxError as exc:
            self._on_error(str(exc))


def via_destination(via: str, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response goes (§18.2.2, RFC 3581): received/rport override sent-by."""
    protocol, _, rest = via.strip().partition(" ")
    if not protocol.upper().startswith("SIP/2.0/UDP"):
        raise sip.SipSyntaxError(f"Via is not SIP/2.0/UDP: {via!r}")
    sent_by = rest.split(";", 1)[0].strip()
    host, _, port = sent_by.rpartition(":") if ":" in sent_by else (sent_by, "", "")
    received, rport = sip.param(via, "received"), sip.param(via, "rport")
    if rport == "rport":
        rport = str(source[1])  # a bare rport the server left for us to fill
    try:
        return received or host, int(rport or port or 5060)
    except ValueError as exc:
        raise sip.SipSyntaxError(f"bad port in Via {via!r}") from exc


class ClientDialog:
    """The caller's side of one INVITE dialog: builds its requests, keeps its state."""

    def __init__(self, transport: Transport, *, call_id: str, local_host: str, from_user: str, to: str,
                 t1: float) -> None:
        self.transport, self.call_id, self.t1 = transport, call_id, t1
        host, port = transport.server
        self.local_tag, self.remote_tag = sip.new_tag(), ""
        self.local_uri = f"sip:{from_user}@{local_host}"
        self.request_uri = self.remote_target = f"sip:{to}@{host}:{port}"
        self.contact = f"<sip:{from_user}@{local_host}:{transport.port}>"
        self.via_host = f"{local_host}:{transport.port}"
        self.cseq = 1
        self.route_set: list[str] = []
        self._invite: sip.SipMessage | None = None
        self._ack: sip.SipMessage | None = None

    def _headers(self, method: str, cseq: int, *, to_tag: bool, branch: str = "") -> list[tuple[str, str]]:
        to = f"<{self.request_uri}>" + (f";tag={self.remote_tag}" if to_tag and self.remote_tag else "")
        return [("via", f"SIP/2.0/UDP {self.via_host};branch={branch or sip.new_branch()};rport"),
                ("max-forwards", "70"), ("from", f"<{self.local_uri}>;tag={self.local_tag}"), ("to", to),
                ("call-id", self.call_id), ("cseq", f"{cseq} {method}")]

    def invite(self, sdp: bytes) -> sip.SipMessage:
        headers = self._headers("INVITE", self.cseq, to_tag=False) + [
            ("contact", self.contact), ("allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO"),
            ("supported", "replaces, timer")]
        if sdp:
            headers.append(("content-type", "application/sdp"))
        self._invite = sip.SipMessage(method="INVITE", uri=self.request_uri, headers=headers, body=sdp)
        return self._invite

    def confirm(self, ok: sip.SipMessage) -> list[str]:
        """Take the dialog's state from the first 2xx; returns what the 2xx got wrong."""
        problems = []
        self.remote_tag = sip.param(ok.get("to"), "tag")
        if not self.remote_tag:
            problems.append("200 to INVITE has no To tag (RFC 3261 §8.2.6.2)")
        contact = ok.get("contact")
        if contact:
            self.remote_target = sip.uri_of(contact)
        else:
            problems.append("200 to INVITE has no Contact (RFC 3261 §13.3.1.4)")
        self.route_set = list(reversed(ok.get_all("record-route")))
        if ok.body and "application/sdp" not in ok.get("content-type").lower():
            problems.append(f"200 body is {ok.get('content-type')!r}, not application/sdp")
        return problems

    def _in_dialog(self, method: str, *, cseq: int | None = None, branch: str = "") -> sip.SipMessage:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        headers = self._headers(method, cseq, to_tag=True, branch=branch)
        headers += [("route", route) for route in self.route_set] + [("contact", self.contact)]
        return sip.SipMessage(method=method, uri=self.remote_target, headers=headers)

    def ack_2xx(self) -> None:
        """The same ACK for the first 200 and each retransmission of it."""
        if self._ack is None:
            self._ack = self._in_dialog("ACK", cseq=1)
        self.transport.send(self._ack)

    def ack_error(self, response: sip.SipMessage) -> None:
        assert self._invite is not None
        headers = [("via", self._invite.get("via")), ("max-forwards", "70"), ("from", self._invite.get("from")),
                   ("to", response.get("to")), ("call-id", self.call_id), ("cseq", "1 ACK")]
        self.transport.send(sip.SipMessage(method="ACK", uri=self.request_uri, headers=headers))

    async def cancel(self) -> int:
        assert self._invite is not None
        headers = [(k, v) for k, v in self._invite.headers if k in ("via", "from", "to", "call-id")]
        headers += [("max-forwards", "70"), ("cseq", "1 CANCEL")]
        response = await self.transport.request(
            sip.SipMessage(method="CANCEL", uri=self.request_uri, headers=headers), self.t1)
        return response.status if response else 0

    async def bye(self) -> int:
        response = await self.transport.request(self._in_dialog("BYE"), self.t1)
        return response.status if response else 0

    async def notify_refer(self, status: int, *, terminated: bool) -> int:
        notify = self._in_dialog("NOTIFY")
        state = "terminated;reason=noresource" if terminated else "active;expires=60"
        notify.headers += [("event", "refer"), ("subscription-state", state),
                           ("content-type", "message/sipfrag;version=2.0")]
        notify.body = f"SIP/2.0 {status} {sip.REASONS.get(status, 'Status')}\r\n".encode()
        response = await self.transport.request(notify, self.t1)
        return response.status if response else 0

    def owns(self, request: sip.SipMessage) -> bool:
        """An in-dialog request from the server: our Call-ID, our tag in To, theirs in From."""
        return (request.get("call-id") == self.call_id
                and sip.param(request.get("to"), "tag") == self.local_tag
                and (not self.remote_tag or sip.param(request.get("from"), "tag") == self.remote_tag))

    def answer_reinvite(self, request: sip.SipMessage, sdp: bytes) -> sip.SipMessage:
        return sip.response_to(request, 200, extra=[("contact", self.contact),
                                                    ("content-type", "application/sdp")], body=sdp)
