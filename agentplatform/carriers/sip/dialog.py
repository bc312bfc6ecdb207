"""One SIP dialog as the UAS sees it (RFC 3261 §12), and its session timer
(RFC 4028). Pure: no sockets, no clock of its own.

The dialog is made from the INVITE we answer: our tag goes on the To, the caller's
Contact is where in-dialog requests go, its Record-Route (kept in order, §12.1.1)
is the route set they follow. It numbers our requests (CSeq) and refuses the
caller's that go backwards (§12.2.2).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from agentplatform.carriers.sip.messages import (
    Headers, NameAddr, SipRequest, SipResponse, SipUri, Via, cseq, format_name_addr, format_uri, format_via,
    new_branch, parse_name_addr, parse_uri,
)
from agentplatform.carriers.sip.transactions import Handle, Timers

MIN_SE = 90  # RFC 4028's floor for Session-Expires (s); also our Min-SE
MAX_FORWARDS = "70"


class DialogError(ValueError):
    """An in-dialog request that the dialog cannot accept; ``status`` says how to answer."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class DialogState(StrEnum):
    EARLY = "early"  # our 2xx sent, no ACK yet
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE (a name-addr)
    remote_uri: str  # the From of the INVITE (a name-addr, no tag)
    remote_target: SipUri
    route_set: list[str]
    local_contact: str
    remote_cseq: int
    local_cseq: int = field(default_factory=lambda: random.randint(1, 2**16))
    state: DialogState = DialogState.EARLY

    @classmethod
    def from_invite(cls, invite: SipRequest, *, local_tag: str, local_contact: str) -> Dialog:
        """The UAS side of the dialog a 2xx to ``invite`` creates (§12.1.1)."""
        headers = invite.headers
        contacts = headers.get_all("Contact")
        if not contacts:
            raise DialogError(400, "Bad Request", "INVITE has no Contact")
        remote = parse_name_addr(headers.get("From") or "")
        local = parse_name_addr(headers.get("To") or "")
        remote_tag = str(remote.params.get("tag") or "")
        remote_cseq, _ = cseq(headers)
        return cls(
            call_id=headers.get("Call-ID") or "",
            local_tag=local_tag, remote_tag=remote_tag,
            local_uri=format_name_addr(_without_tag(local)),
            remote_uri=format_name_addr(_without_tag(remote)),
            remote_target=parse_name_addr(contacts[0]).uri,
            route_set=list(headers.get_all("Record-Route")),
            local_contact=local_contact, remote_cseq=remote_cseq,
        )

    @classmethod
    def from_2xx(cls, invite: SipRequest, ok: SipResponse) -> Dialog:
        """The UAC side of the dialog our INVITE's 2xx creates (§12.1.2): the
        answerer's Contact is the remote target, its Record-Route reversed the
        route set; our From is the local URI, the 2xx's To (with its tag) the remote."""
        contacts = ok.headers.get_all("Contact")
        if not contacts:
            raise DialogError(400, "Bad Request", "the 2xx has no Contact")
        local = parse_name_addr(invite.headers.get("From") or "")
        remote = parse_name_addr(ok.headers.get("To") or "")
        local_cseq, _ = cseq(invite.headers)
        return cls(
            call_id=invite.headers.get("Call-ID") or "",
            local_tag=str(local.params.get("tag") or ""),
            remote_tag=str(remote.params.get("tag") or ""),
            local_uri=format_name_addr(_without_tag(local)),
            remote_uri=format_name_addr(_without_tag(remote)),
            remote_target=parse_name_addr(contacts[0]).uri,
            route_set=list(reversed(ok.headers.get_all("Record-Route"))),
            local_contact=invite.headers.get("Contact") or "",
            remote_cseq=0, local_cseq=local_cseq,
        )

    def matches(self, request: SipRequest) -> bool:
        """The request is in this dialog: Call-ID, our tag on To, theirs on From."""
        to_tag = parse_name_addr(request.headers.get("To") or "").params.get("tag")
        from_tag = parse_name_addr(request.headers.get("From") or "").params.get("tag")
        return (request.headers.get("Call-ID") == self.call_id and to_tag == self.local_tag
                and (from_tag or "") == self.remote_tag)

    def accept_remote(self, request: SipRequest) -> None:
        """Check and take the caller's CSeq; a target refresh (re-INVITE, UPDATE)
        with a Contact moves the remote target (§12.2.2)."""
        number, _ = cseq(request.headers)
        if request.method not in ("ACK", "CANCEL"):
            if number <= self.remote_cseq:
                raise DialogError(500, "Server Internal Error",
                                  f"CSeq {number} not after {self.remote_cseq}")
            self.remote_cseq = number
        if request.method in ("INVITE", "UPDATE"):
            contacts = request.headers.get_all("Contact")
            if contacts:
                self.remote_target = parse_name_addr(contacts[0]).uri

    def confirm(self) -> None:
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    def new_request(self, method: str, *, via_host: str, via_port: int,
                    extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                    content_type: str | None = None) -> SipRequest:
        """Our next request in this dialog (§12.2.1.1): loose routing puts the
        remote target in the Request-URI and the route set in Route; a strict
        first hop (no ``lr``) takes the Request-URI itself. The ACK of a 2xx
        keeps the INVITE's CSeq number (§13.2.2.4); every other request takes the next."""
        if method != "ACK":
            self.local_cseq += 1
        uri, routes = self._request_uri_and_routes()
        headers = Headers()
        headers.add("Via", format_via(Via("UDP", via_host, via_port,
                                          {"branch": new_branch(), "rport": None})))
        headers.add("Max-Forwards", MAX_FORWARDS)
        for route in routes:
            headers.add("Route", route)
        headers.add("From", f"{self.local_uri};tag={self.local_tag}")
        headers.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_cseq} {method}")
        headers.add("Contact", self.local_contact)
        for name, value in extra or ():
            headers.add(name, value)
        if content_type:
            headers.add("Content-Type", content_type)
        return SipRequest(method, uri, headers, body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        target = format_uri(self.remote_target)
        if not self.route_set:
            return target, []
        first = parse_name_addr(self.route_set[0]).uri
        if "lr" in first.params:
            return target, list(self.route_set)
        return format_uri(first), [*self.route_set[1:], f"<{target}>"]

    def next_hop(self) -> tuple[str, int]:
        """Where our in-dialog requests go: the first route, else the remote target."""
        uri = parse_name_addr(self.route_set[0]).uri if self.route_set else self.remote_target
        host = str(uri.params.get("maddr") or uri.host)
        return host.strip("[]"), uri.port or 5060


def _without_tag(addr: NameAddr) -> NameAddr:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return NameAddr(addr.display, addr.uri, params)


# ------------------------------------------------------------------ session timers


@dataclass(frozen=True, slots=True)
class SessionTimerOffer:
    """What RFC 4028 asks of our 2xx: the interval, who refreshes, Require: timer."""

    interval: int
    refresher: str  # always "uac" here: the caller refreshes, we answer
    require_timer: bool

    def headers(self) -> list[tuple[str, str]]:
        out = [("Session-Expires", f"{self.interval};refresher={self.refresher}")]
        if self.require_timer:
            out.append(("Require", "timer"))
        return out


def negotiate_session_timer(request: SipRequest) -> SessionTimerOffer | None:
    """The session timer for a 2xx to ``request``, or ``None`` when it asked for none.

    We never refresh: the caller is the refresher (``refresher=uac``), which every
    trunk supports. An interval under our Min-SE is refused with 422 (§6)."""
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    head, *params = [p.strip() for p in value.split(";")]
    try:
        interval = int(head)
    except ValueError:
        raise DialogError(400, "Bad Request", f"Session-Expires {value[:40]!r}") from None
    if interval < MIN_SE:
        raise DialogError(422, "Session Interval Too Small", f"{interval} < Min-SE {MIN_SE}")
    supported = {s.strip().lower() for v in request.headers.get_all("Supported")
                 for s in v.split(",")}
    del params  # the caller's refresher choice is overruled: uac refreshes
    return SessionTimerOffer(interval, "uac", "timer" in supported)


class SessionWatch:
    """Ends the call if the refresher misses its refresh: BYE at
    interval − min(32, interval/3) after the last refresh (RFC 4028 §10)."""

    def __init__(self, timers: Timers, on_expired: Callable[[], None]) -> None:
        self._timers = timers
        self._on_expired = on_expired
        self._handle: Handle | None = None
        self.interval: int | None = None

    @staticmethod
    def deadline(interval: int) -> float:
        return interval - min(32.0, interval / 3)

    def refreshed(self, offer: SessionTimerOffer | None) -> None:
        """A (re-)INVITE or UPDATE was answered with ``offer``: restart the watch."""
        self.stop()
        if offer is None:
            self.interval = None
            return
        self.interval = offer.interval
        self._handle = self._timers.call_later(self.deadline(offer.interval), self._expired)

    def _expired(self) -> None:
        self._handle = None
        self._on_expired()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def mirrored_direction(remote: str) -> str:
    """Our SDP direction answering the caller's (RFC 3264 §6.1): hold is sendonly
    from them, so recvonly from us; inactive stays inactive."""
    return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
        remote, "sendrecv")


def we_may_send(remote_direction: str) -> bool:
    """Whether to send audio while the caller's direction is ``remote_direction``."""
    return remote_direction in ("sendrecv", "recvonly")


def parse_uri_user(text: str) -> str:
    """The user part of a SIP URI (the dialed number of a Request-URI)."""
    return parse_uri(text).user
