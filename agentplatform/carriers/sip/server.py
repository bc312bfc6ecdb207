"""The SIP user agent server: one asyncio UDP endpoint on ``SIP_LISTEN``.

Every datagram is parsed (``messages``) and dispatched by method; a malformed one is
counted by kind and dropped before it can touch any call. New INVITEs are checked
in the order that costs least to refuse: the source address against
``SIP_ALLOWED_PEERS`` (403, nothing else done — an empty list refuses every INVITE),
the extensions and body we require, the dialed number (404), the SDP offer (488),
the spend controls (486), and only then RTP ports are bound and the 200 with our
SDP answer sent. The call is handed to the platform (``handle_call``) once the
caller ACKs; from then on ``call.SipCallAudio`` owns the dialog.

INVITE without SDP (a delayed offer) is answered 488 with a Warning, not 606:
this endpoint cannot do it, but another route the trunk knows may, and 606
("not acceptable anywhere") would tell the trunk not to try.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from agentplatform.carriers.base import CallAudio
from agentplatform.carriers.sip.call import Media, SipCallAudio, call_info
from agentplatform.carriers.sip.dialog import Dialog, DialogError, negotiate_session_timer
from agentplatform.carriers.sip.messages import (
    MalformedSip, SipRequest, SipResponse, build_message, is_keepalive, new_tag, parse_message,
    parse_name_addr, parse_uri, response_address, response_to, top_via,
)
from agentplatform.carriers.sip.sdp import Answer, Codec, SdpError, answer_offer
from agentplatform.carriers.sip.transactions import (
    InviteClientTransaction, InviteServerTransaction, NonInviteClientTransaction, NonInviteServerTransaction, Timers,
    TransactionTable, transaction_key,
)
from agentplatform.config import Settings

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, NOTIFY, INFO, REFER"
SUPPORTED = "timer"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ------------------------------------------------------------------ settings


def parse_hostport(text: str, setting: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ValueError(f"{setting}={text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_port_range(text: str) -> range:
    low, sep, high = text.strip().partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) < int(high) < 65536:
        raise ValueError(f"SIP_RTP_PORTS={text!r}: expected LO-HI, e.g. 20000-20999")
    return range(int(low), int(high) + 1)


def parse_peers(text: str) -> list[Network]:
    peers = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            peers.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"SIP_ALLOWED_PEERS: {part!r} is not a CIDR ({exc})") from None
    return peers


@dataclass(frozen=True, slots=True)
class SipConfig:
    listen: tuple[str, int]
    public_address: str
    allowed_peers: tuple[Network, ...]
    rtp_ports: range
    rtp_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SipConfig:
        listen = parse_hostport(settings.sip_listen, "SIP_LISTEN")
        public = settings.sip_public_address.strip() or listen[0]
        return cls(listen, public, tuple(parse_peers(settings.sip_allowed_peers)),
                   parse_port_range(settings.sip_rtp_ports), settings.sip_rtp_timeout_seconds)

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.allowed_peers)


class CallHost(Protocol):
    """The platform as the server sees it (``plugin.CarrierContext`` fits)."""

    async def lookup_agent(self, number: str) -> str | None: ...
    async def admit(self, carrier_call_id: str, agent: str, from_number: str,
                    to_number: str) -> str | None: ...
    def handle_call(self, audio: CallAudio) -> Awaitable[None]: ...
    def call_finished(self, carrier_call_id: str) -> None: ...
    def count_malformed(self, kind: str, n: int = 1) -> None: ...


OpenMedia = Callable[[Codec, int | None, tuple[str, int]], Awaitable[Media]]


def rtp_media_opener(config: SipConfig) -> OpenMedia:
    """RTP on the listen host, in the configured port range."""
    async def open_media(codec: Codec, dtmf: int | None, remote: tuple[str, int]) -> Media:
        from agentplatform.carriers.sip.media import RtpSession
        return await RtpSession.open(bind_host=config.listen[0], ports=config.rtp_ports,
                                     codec=codec, dtmf_payload_type=dtmf, remote=remote,
                                     timeout_s=config.rtp_timeout_s)
    return open_media


@dataclass(slots=True)
class _Pending:
    """An INVITE we have not answered finally yet."""

    tx: InviteServerTransaction
    local_tag: str
    cancelled: bool = False
    admitted: bool = False


def dialed_variants(user: str) -> list[str]:
    """The Request-URI user as the agent files may spell it: with or without '+'."""
    bare = user.removeprefix("+")
    return [user, bare if user.startswith("+") else f"+{user}"] if bare else []


# ------------------------------------------------------------------ the server


class SipServer(asyncio.DatagramProtocol):
    def __init__(self, config: SipConfig, host: CallHost, *,
                 open_media: OpenMedia | None = None, timers: Timers | None = None) -> None:
        self.config = config
        self.host = host
        self.malformed_counts: Counter[str] = Counter()
        self.calls: dict[str, SipCallAudio] = {}
        self._open_media = open_media or rtp_media_opener(config)
        self._timers = timers
        self._table = TransactionTable()
        self._pending: dict[str, _Pending] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task] = set()
        self.via = (config.public_address, config.listen[1])
        self.public_address = config.public_address
        self._placed_peers: dict[str, str] = {}  # Call-ID of a call we placed → the trunk's address
        if not config.allowed_peers:
            log.warning("SIP_ALLOWED_PEERS is empty: every INVITE will be refused with 403")

    @property
    def timers(self) -> Timers:
        return self._timers or asyncio.get_running_loop()

    # ------------------------------------------------------------ transport

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        if sock and self.config.listen[1] == 0:
            self.via = (self.config.public_address, sock[1])
        log.info("SIP listening on %s:%s (UDP); INVITE allowed from %s", *self.via,
                 ", ".join(map(str, self.config.allowed_peers)) or "nobody")

    def send_to(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)

    def _count(self, kind: str, detail: str, source: tuple[str, int]) -> None:
        self.malformed_counts[kind] += 1
        self.host.count_malformed(kind)
        log.debug("dropped a malformed SIP datagram from %s: %s %s", source, kind, detail)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_keepalive(data):
            return
        source = (addr[0], addr[1])
        try:
            message = parse_message(data)
            if isinstance(message, SipRequest):
                self._on_request(message, source)
            else:
                self._on_response(message, source)
        except MalformedSip as exc:
            self._count(str(exc.kind), exc.detail, source)
        except Exception:  # one datagram must never take the endpoint down
            log.exception("SIP datagram from %s failed", source)
            self._count("internal_error", "", source)

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await call.close()
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------ requests

    def _respond_fn(self, request: SipRequest, source: tuple[str, int]) -> Callable[[bytes], None]:
        target = response_address(top_via(request), source)
        return lambda data: self.send_to(data, target)

    def _server_tx(self, request: SipRequest, source: tuple[str, int]) -> NonInviteServerTransaction:
        key = transaction_key(request)
        tx = NonInviteServerTransaction(request, self._respond_fn(request, source), self.timers,
                                        on_terminated=lambda: self._table.remove_server(key))
        self._table.add_server(key, tx)
        return tx

    def _on_request(self, request: SipRequest, source: tuple[str, int]) -> None:
        if request.method == "ACK":
            self._on_ack(request)
            return
        existing = self._table.find_server(request)
        if existing is not None:
            existing.receive_request(request)  # a retransmission: the same answer again
            return
        if request.method == "OPTIONS":
            self._on_options(request, source)
            return
        if not self.config.allows(source[0]) and not self._placed_peer(request, source):
            log.warning("SIP %s from %s refused: not in SIP_ALLOWED_PEERS", request.method, source[0])
            if request.method == "INVITE":
                tx = self._invite_tx(request, source, trying=False)
                tx.respond(response_to(request, 403, to_tag=new_tag()))
            else:
                self._server_tx(request, source).respond(response_to(request, 403))
            return
        to_tag = parse_name_addr(request.headers.get("To") or "").tag
        if request.method == "INVITE" and not to_tag:
            self._on_invite(request, source)
        elif request.method == "CANCEL":
            self._on_cancel(request, source)
        elif request.method in ("INVITE", "BYE", "UPDATE", "NOTIFY", "INFO"):
            self._in_dialog(request, source)
        else:
            tx = self._server_tx(request, source)
            refusal = response_to(request, 405 if request.method not in ("PRACK",) else 481)
            refusal.headers.add("Allow", ALLOW)
            tx.respond(refusal)

    def _placed_peer(self, request: SipRequest, source: tuple[str, int]) -> bool:
        """An in-dialog request (BYE, re-INVITE) on a call we placed, from the address
        we dialed: taken even when that trunk is not in SIP_ALLOWED_PEERS."""
        trusted = self._placed_peers.get(request.headers.get("Call-ID") or "")
        to_tag = parse_name_addr(request.headers.get("To") or "").tag
        return trusted is not None and trusted == source[0] and bool(to_tag)

    def _on_options(self, request: SipRequest, source: tuple[str, int]) -> None:
        ok = response_to(request, 200)
        for name, value in (("Allow", ALLOW), ("Accept", "application/sdp"),
                            ("Supported", SUPPORTED)):
            ok.headers.add(name, value)
        self._server_tx(request, source).respond(ok)

    def _on_ack(self, ack: SipRequest) -> None:
        tx = self._table.find_server(ack)
        if tx is not None and isinstance(tx, InviteServerTransaction) and not (
                tx.last_response and tx.last_response.status < 300):
            tx.receive_request(ack)  # the ACK for an error response
            return
        call = self.calls.get(ack.headers.get("Call-ID") or "")
        if call is not None and call.dialog.matches(ack) and call.on_ack(ack):
            self._spawn(self._run_call(call))

    def _on_cancel(self, cancel: SipRequest, source: tuple[str, int]) -> None:
        tx = self._table.invite_for_cancel(cancel)
        reply = self._server_tx(cancel, source)
        if tx is None:
            reply.respond(response_to(cancel, 481))
            return
        reply.respond(response_to(cancel, 200))
        pending = self._pending.get(cancel.headers.get("Call-ID") or "")
        if pending is None or pending.tx is not tx or tx.final_sent:
            return  # already answered: the CANCEL changes nothing (§9.2)
        pending.cancelled = True
        tx.respond(response_to(tx.request, 487, to_tag=pending.local_tag))
        if pending.admitted:
            self.host.call_finished(cancel.headers.get("Call-ID") or "")

    def _in_dialog(self, request: SipRequest, source: tuple[str, int]) -> None:
        call = self.calls.get(request.headers.get("Call-ID") or "")
        if call is None or not call.dialog.matches(request):
            tx = (self._invite_tx(request, source) if request.method == "INVITE"
                  else self._server_tx(request, source))
            tx.respond(response_to(request, 481))
            return
        if request.method == "INVITE":
            send = self._respond_fn(request, source)
            call.on_refresh(request, self._invite_tx(request, source), send)
            return
        tx = self._server_tx(request, source)
        if request.method == "BYE":
            call.on_bye(request, tx)
        elif request.method == "NOTIFY":
            call.on_notify(request, tx)
        elif request.method == "INFO":
            call.on_info(request, tx)
        else:  # UPDATE: a refresh without an ACK, so nothing to resend
            call.on_refresh(request, tx, self._respond_fn(request, source))

    def _invite_tx(self, invite: SipRequest, source: tuple[str, int], *,
                   trying: bool = True) -> InviteServerTransaction:
        key = transaction_key(invite)
        tx = InviteServerTransaction(invite, self._respond_fn(invite, source), self.timers,
                                     on_terminated=lambda: self._table.remove_server(key),
                                     send_trying=trying)
        self._table.add_server(key, tx)
        return tx

    # ------------------------------------------------------------ a new call

    def _on_invite(self, invite: SipRequest, source: tuple[str, int]) -> None:
        call_id = invite.headers.get("Call-ID") or ""
        if call_id in self.calls or call_id in self._pending:
            # Same Call-ID, new branch, no To tag: a second INVITE we will not fork on.
            tx = self._invite_tx(invite, source, trying=False)
            tx.respond(response_to(invite, 482, to_tag=new_tag()))
            return
        pending = _Pending(self._invite_tx(invite, source), new_tag())
        self._pending[call_id] = pending
        self._spawn(self._answer(invite, source, pending))

    async def _answer(self, invite: SipRequest, source: tuple[str, int], pending: _Pending) -> None:
        call_id = invite.headers.get("Call-ID") or ""
        try:
            await self._set_up(invite, source, pending)
        except Exception:
            log.exception("call %s: answering the INVITE failed", call_id)
            if not pending.tx.final_sent:
                pending.tx.respond(response_to(invite, 500, to_tag=pending.local_tag))
            if pending.admitted:
                self.host.call_finished(call_id)
        finally:
            self._pending.pop(call_id, None)

    def _refuse(self, pending: _Pending, status: int, warning: str = "",
                extra: tuple[tuple[str, str], ...] = ()) -> None:
        if pending.cancelled or pending.tx.final_sent:
            return
        refusal = response_to(pending.tx.request, status, to_tag=pending.local_tag)
        if warning:
            text = warning.replace('"', "'")[:200]
            refusal.headers.add("Warning", f'399 {self.via[0]} "{text}"')
        for name, value in extra:
            refusal.headers.add(name, value)
        pending.tx.respond(refusal)

    async def _set_up(self, invite: SipRequest, source: tuple[str, int], pending: _Pending) -> None:
        headers = invite.headers
        call_id = headers.get("Call-ID") or ""
        unsupported = [r for v in headers.get_all("Require") for r in [v.strip()]
                       if r and r.lower() != "timer"]
        if unsupported:
            self._refuse(pending, 420, extra=(("Unsupported", ", ".join(unsupported)),))
            return
        if not invite.body:
            self._refuse(pending, 488, "Delayed offer (INVITE without SDP) is not supported")
            return
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/sdp":
            self._refuse(pending, 415, extra=(("Accept", "application/sdp"),))
            return
        try:
            timer = negotiate_session_timer(invite)
        except DialogError as exc:
            extra = (("Min-SE", "90"),) if exc.status == 422 else ()
            self._refuse(pending, exc.status, exc.detail, extra)
            return
        dialed = parse_uri(invite.uri).user
        agent = None
        for number in dialed_variants(dialed):
            agent = await self.host.lookup_agent(number)
            if agent:
                break
        if not agent:
            log.info("call %s: no agent answers %r", call_id, dialed)
            self._refuse(pending, 404, "No agent answers this number")
            return
        session_id = random.randint(1, 2**31)
        try:
            probe = answer_offer(invite.body, local_address=self.config.public_address,
                                 local_port=9, session_id=session_id, version=1)
        except SdpError as exc:
            self._refuse(pending, exc.status, str(exc))
            return
        if pending.cancelled:
            return
        caller = parse_name_addr(headers.get("From") or "").uri.user
        refusal = await self.host.admit(call_id, agent, caller, dialed)
        if refusal is not None:
            self._refuse(pending, 486, refusal)
            return
        pending.admitted = True
        if pending.cancelled:
            self.host.call_finished(call_id)
            return
        try:
            media = await self._open_media(probe.codec, probe.dtmf_payload_type, probe.remote_rtp)
        except Exception as exc:  # no free RTP port, a socket error
            log.warning("call %s: no media: %s", call_id, exc)
            self._refuse(pending, 503, "No media port available")
            self.host.call_finished(call_id)
            return
        if pending.cancelled:
            await media.close()
            return
        answer = answer_offer(invite.body, local_address=self.config.public_address,
                              local_port=media.local_port, session_id=session_id, version=1)
        self._accept(invite, source, pending, media, answer, agent, dialed, session_id, timer)

    def _accept(self, invite, source, pending: _Pending, media: Media, answer: Answer, agent: str,
                dialed: str, session_id: int, timer) -> None:
        contact = f"<sip:{dialed or 'agent'}@{self.via[0]}:{self.via[1]}>"
        dialog = Dialog.from_invite(invite, local_tag=pending.local_tag, local_contact=contact)
        info = call_info(invite, agent=agent, local_tag=pending.local_tag, to_number=dialed)
        media.set_hold(answer.direction in ("sendrecv", "recvonly"))
        call = SipCallAudio(info=info, dialog=dialog, media=media, signaling=self, sdp=answer.sdp,
                            session_id=session_id, session_timer=timer)
        ok = response_to(invite, 200, to_tag=pending.local_tag, body=answer.sdp,
                         content_type="application/sdp")
        for name, value in (("Contact", contact), ("Allow", ALLOW), ("Supported", SUPPORTED),
                            *(timer.headers() if timer else ())):
            ok.headers.add(name, value)
        self.calls[info.call_id] = call
        pending.tx.respond(ok)
        call.answered(ok, self._respond_fn(invite, source))
        log.info("call %s: answered for agent %s (%s, RTP port %d)", info.call_id, agent,
                 answer.codec.name, media.local_port)

    async def _run_call(self, call: SipCallAudio) -> None:
        try:
            await self.host.handle_call(call)
        except Exception:
            log.exception("call %s: the call handler failed", call.info.call_id)
        finally:
            await call.close()  # BYE if the handler left the caller on the line

    # ------------------------------------------------------------ responses and our requests

    def _on_response(self, response: SipResponse, source: tuple[str, int]) -> None:
        tx = self._table.find_client(response)
        if tx is None:
            if 200 <= response.status < 300 and transaction_key(response)[2] == "INVITE":
                return  # a 2xx long after its transaction: the ACK went out with the first
            log.debug("SIP response from %s matches no transaction", source)
            return
        tx.receive_response(response)

    def request(self, request: SipRequest, to: tuple[str, int]) -> asyncio.Future[SipResponse | None]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[SipResponse | None] = loop.create_future()
        key = transaction_key(request)

        def done(response: SipResponse | None) -> None:
            if not result.done():
                result.set_result(response)

        tx = NonInviteClientTransaction(request, lambda data: self.send_to(data, to), self.timers,
                                        on_final=done,
                                        on_terminated=lambda: self._table.remove_client(key))
        self._table.add_client(key, tx)
        return result

    def invite(self, invite: SipRequest, to: tuple[str, int], **callbacks) -> InviteClientTransaction:
        """Send our ``invite`` to ``to`` in an INVITE client transaction; responses
        arriving on the listen socket reach ``callbacks`` (see the transaction)."""
        key = transaction_key(invite)
        tx = InviteClientTransaction(invite, lambda data: self.send_to(data, to), self.timers,
                                     on_terminated=lambda: self._table.remove_client(key), **callbacks)
        self._table.add_client(key, tx)
        return tx

    def trust_peer(self, call_id: str, host: str | None) -> None:
        """The address a call we place was sent to (its BYE comes from there), or
        ``None`` when that call is over."""
        if host is None:
            self._placed_peers.pop(call_id, None)
        else:
            self._placed_peers[call_id] = host

    def run_placed_call(self, call: SipCallAudio) -> None:
        """A call we placed was answered and ACKed: the platform takes it from here."""
        self.calls[call.info.call_id] = call
        self._spawn(self._run_call(call))

    def answer_sdp(self, offer: bytes, *, local_port: int, session_id: int, version: int) -> Answer:
        return answer_offer(offer, local_address=self.config.public_address,
                            local_port=local_port, session_id=session_id, version=version)

    def call_over(self, call: SipCallAudio) -> None:
        if self.calls.get(call.info.call_id) is call:
            del self.calls[call.info.call_id]
        self._placed_peers.pop(call.info.call_id, None)
        if not call.went_live:  # admitted, answered, never ACKed: free what admission held
            self.host.call_finished(call.info.call_id)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def serve(config: SipConfig, host: CallHost, **kwargs) -> tuple[asyncio.DatagramTransport, SipServer]:
    """Bind ``config.listen`` and return the transport and the server."""
    loop = asyncio.get_running_loop()
    server = SipServer(config, host, **kwargs)
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=config.listen)
    return transport, server
