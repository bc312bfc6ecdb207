"""Placing calls through Twilio's REST API, and what Twilio tells us about them.

``calls.create`` gets TwiML that, once the callee answers, connects the call to our
media stream (``<Connect><Stream>``) with a single-use stream token. Twilio does
not know the CallSid's stream yet when we write the TwiML, so the token is minted
for the *platform* call id, which travels as a stream parameter; the request's
other facts (params, machine detection, voicemail message) travel the same way, so
whichever server process the stream lands on rebuilds the request from the stream
alone (Twilio signs the upgrade; the token binds call id and agent).

Twilio then calls us back, signed, on two routes:

* ``/twilio/dial-status?call=…&agent=…`` — the call's progress (``initiated``,
  ``ringing``, ``answered``, ``completed``) and its final word when nobody answered
  (``busy``, ``no-answer``, ``failed``, ``canceled``), mapped by ``DIAL_OUTCOMES``;
* ``/twilio/amd`` — asynchronous answering-machine detection (``DetectMessageEnd``):
  ``AnsweredBy`` mapped by ``ANSWERED_BY`` to an ``AnsweringMachine`` event, routed by
  CallSid into the live stream's events (``LiveStreams``). A verdict that arrives
  before its stream is kept briefly for it. A verdict that lands on another server
  process than the stream is not forwarded: the bridge then speaks after its hold.

The ``twilio`` client is synchronous, so the REST request runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from twilio.base.exceptions import TwilioException
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, VoiceResponse

from agentplatform.carriers.dialing import (
    AnsweringMachine, MachineDetection, OutboundRequest, Verdict,
)
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.control import rest_client
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.records import EndReason

if TYPE_CHECKING:
    from agentplatform.carriers.plugin import CarrierContext
    from agentplatform.carriers.twilio.stream import TwilioCallAudio

log = logging.getLogger(__name__)

DIAL_STATUS_PATH = "/twilio/dial-status"
AMD_PATH = "/twilio/amd"
MEDIA_PATH = "/twilio/media"
# Twilio refuses a ``Twiml`` parameter longer than this.
MAX_TWIML_CHARS = 4000
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]

# Stream parameters of an outbound call (besides ``token``, ``agent``, ``from``, ``to``).
CALL_ID_PARAMETER = "outbound_call"
MACHINE_DETECTION_PARAMETER = "machine_detection"
VOICEMAIL_PARAMETER = "voicemail_message"
PARAM_PREFIX = "params."  # each of the request's params, as ``params.NAME``

# Twilio's final statuses for a call nobody answered -> our end reason.
DIAL_OUTCOMES: dict[str, EndReason] = {
    "busy": EndReason.BUSY,
    "no-answer": EndReason.NO_ANSWER,
    "failed": EndReason.FAILED,
    "canceled": EndReason.FAILED,
}
# Statuses that mean the attempt is under way, not yet answered.
RINGING_STATUSES = frozenset({"initiated", "ringing"})

# Twilio's ``AnsweredBy`` -> (verdict, the machine's greeting is over). With
# ``DetectMessageEnd`` a machine is reported once its greeting ended (``machine_end_*``);
# a fax will not take a message either way, so it is a machine whose greeting is over.
ANSWERED_BY: dict[str, tuple[Verdict, bool]] = {
    "human": ("human", False),
    "unknown": ("unknown", False),
    "machine_start": ("machine", False),
    "machine_end_beep": ("machine", True),
    "machine_end_silence": ("machine", True),
    "machine_end_other": ("machine", True),
    "fax": ("machine", True),
}
# How long a verdict waits for a stream that has not started yet.
EARLY_VERDICT_SECONDS = 60.0
# Statuses after which a placed call no longer rings (answered, or over).
NOT_RINGING_STATUSES = frozenset({"in-progress", "answered", "completed", *DIAL_OUTCOMES})
STOPPED_WHILE_RINGING = "the server stopped while the call rang; Twilio was told to cancel it"
CANCEL_TIMEOUT_SECONDS = 5.0


def stream_parameters(request: OutboundRequest, token: str) -> dict[str, str]:
    """The ``<Parameter>``s of an outbound call's stream."""
    params = {
        "token": token, "agent": request.agent, "from": request.from_number,
        "to": request.to_number, CALL_ID_PARAMETER: request.call_id,
        MACHINE_DETECTION_PARAMETER: request.machine_detection.value,
    }
    if request.voicemail_message:
        params[VOICEMAIL_PARAMETER] = request.voicemail_message
    params.update({PARAM_PREFIX + name: value for name, value in request.params.items()})
    return params


def stream_twiml(stream_url: str, parameters: Mapping[str, str], *, digits: str = "") -> str:
    """``[<Play digits>]<Connect><Stream url><Parameter>…</Stream></Connect><Hangup/>``."""
    response = VoiceResponse()
    if digits:
        response.play(digits=digits)
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    response.hangup()
    return str(response)


def request_from_parameters(parameters: Mapping[str, str], agent: str) -> OutboundRequest | None:
    """The outbound request a stream's parameters describe, or ``None`` for an
    inbound call's stream. ``agent`` is the verified token's."""
    call_id = parameters.get(CALL_ID_PARAMETER, "")
    if not call_id:
        return None
    try:
        detection = MachineDetection(parameters.get(MACHINE_DETECTION_PARAMETER, "off"))
    except ValueError:
        detection = MachineDetection.OFF
    return OutboundRequest(
        call_id=call_id, agent=agent, to_number=parameters.get("to", ""),
        from_number=parameters.get("from", ""), carrier="twilio",
        params={k[len(PARAM_PREFIX):]: v for k, v in parameters.items()
                if k.startswith(PARAM_PREFIX)},
        machine_detection=detection,
        voicemail_message=parameters.get(VOICEMAIL_PARAMETER, ""),
    )


def verdict_of(answered_by: str) -> AnsweringMachine | None:
    """Twilio's ``AnsweredBy`` as a carrier event; ``None`` for a value Twilio does
    not document (logged and dropped by the caller)."""
    mapped = ANSWERED_BY.get(answered_by)
    if mapped is None:
        return None
    verdict, ended = mapped
    return AnsweringMachine(verdict=verdict, greeting_ended=ended, detail=answered_by)


@dataclass(slots=True)
class _Early:
    event: AnsweringMachine
    until: float


class LiveStreams:
    """This process's live Twilio streams by CallSid, so an HTTP callback (the AMD
    verdict) reaches the WebSocket of its call."""

    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._streams: dict[str, TwilioCallAudio] = {}
        self._early: dict[str, _Early] = {}
        self._clock = clock

    def add(self, call_sid: str, stream: TwilioCallAudio) -> None:
        self._streams[call_sid] = stream
        early = self._early.pop(call_sid, None)
        if early is not None and early.until >= self._clock():
            stream.deliver(early.event)

    def remove(self, call_sid: str, stream: TwilioCallAudio) -> None:
        if self._streams.get(call_sid) is stream:
            del self._streams[call_sid]

    def get(self, call_sid: str) -> TwilioCallAudio | None:
        return self._streams.get(call_sid)

    def deliver(self, call_sid: str, event: AnsweringMachine) -> bool:
        """Into the call's stream; kept for a stream yet to start. True if delivered."""
        stream = self._streams.get(call_sid)
        if stream is not None:
            stream.deliver(event)
            return True
        now = self._clock()
        self._early = {sid: e for sid, e in self._early.items() if e.until >= now}
        self._early[call_sid] = _Early(event, now + EARLY_VERDICT_SECONDS)
        return False


class TwilioDialer:
    """Places calls for the Twilio carrier and interprets Twilio's callbacks."""

    def __init__(self, settings: Settings, tokens: StreamTokens, context: CarrierContext,
                 live: LiveStreams, *, media_url: Callable[[], str] | None = None) -> None:
        """``media_url``: the stream URL placed calls are sent to (default: PUBLIC_URL's
        ``wss://…/twilio/media``; the media listener's when it is on)."""
        self._settings = settings
        self._media_url = media_url
        self._tokens = tokens
        self._context = context
        self.live = live
        self._client: Client | None = None
        # Calls this process placed that have not been answered or ended yet, by
        # CallSid, with when to forget them (a status that landed elsewhere).
        self._ringing: dict[str, tuple[OutboundRequest, float]] = {}

    def problem(self) -> str | None:
        """Why calls cannot be placed now (fail closed without credentials)."""
        s = self._settings
        if not s.twilio_account_sid or not s.twilio_auth_token:
            return ("the twilio carrier cannot place calls: set TWILIO_ACCOUNT_SID and "
                    "TWILIO_AUTH_TOKEN")
        if not s.public_url:
            return ("the twilio carrier cannot place calls: set PUBLIC_URL, the address "
                    "Twilio reaches this server on for the call's stream and callbacks")
        return None

    def _rest(self) -> Client:
        if self._client is None:
            s = self._settings
            self._client = rest_client(s.twilio_account_sid, s.twilio_auth_token,
                                       s.twilio_api_base_url)
        return self._client

    def create_parameters(self, request: OutboundRequest) -> dict[str, object]:
        """The ``calls.create`` arguments for ``request`` (a fresh stream token in them)."""
        s = self._settings
        http_base, ws_base = _bases(s.public_url)
        ttl = s.twilio_ring_timeout_seconds + s.stream_token_ttl_seconds
        token = self._tokens.mint(request.call_id, request.agent, ttl)
        url = self._media_url() if self._media_url is not None else ws_base + MEDIA_PATH
        twiml = stream_twiml(url, stream_parameters(request, token))
        if len(twiml) > MAX_TWIML_CHARS:
            raise CarrierError(f"the call's TwiML is {len(twiml)} characters, over Twilio's "
                               f"{MAX_TWIML_CHARS}: shorten params or voicemail_message")
        query = urlencode({"call": request.call_id, "agent": request.agent})
        create: dict[str, object] = dict(
            to=request.to_number, from_=request.from_number, twiml=twiml,
            status_callback=f"{http_base}{DIAL_STATUS_PATH}?{query}",
            status_callback_event=STATUS_EVENTS, status_callback_method="POST",
            timeout=s.twilio_ring_timeout_seconds,
        )
        if request.machine_detection is not MachineDetection.OFF:
            create.update(machine_detection="DetectMessageEnd", async_amd="true",
                          async_amd_status_callback=http_base + AMD_PATH,
                          async_amd_status_callback_method="POST")
        return create

    async def place_call(self, request: OutboundRequest) -> None:
        problem = self.problem()
        if problem is not None:
            raise CarrierError(problem)
        create = self.create_parameters(request)
        try:
            call = await asyncio.to_thread(self._rest().calls.create, **create)
        except TwilioException as exc:
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            message = getattr(exc, "msg", "") or str(exc)
            raise CarrierError(f"Twilio refused the call: {status} {code} {message}") from exc
        except OSError as exc:
            raise CarrierError(f"could not reach Twilio: {exc!r}") from exc
        log.info("call %s: Twilio call %s created (%s)", request.call_id, call.sid, call.status)
        now = time.monotonic()
        self._ringing = {sid: v for sid, v in self._ringing.items() if v[1] > now}
        if call.sid:
            forget_at = now + self._settings.twilio_ring_timeout_seconds + 60.0
            self._ringing[call.sid] = (request, forget_at)
        self._context.dial_progress(request, "ringing", call.sid or "")

    def on_dial_status(self, call_id: str, agent: str, form: Mapping[str, str]) -> None:
        """A signed status callback of a call we placed."""
        call_sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
        request = OutboundRequest(call_id=call_id, agent=agent, to_number=form.get("To", ""),
                                  from_number=form.get("From", ""), carrier="twilio")
        outcome = DIAL_OUTCOMES.get(status)
        if status in NOT_RINGING_STATUSES:
            self._ringing.pop(call_sid, None)
        if status in RINGING_STATUSES:
            self._context.dial_progress(request, "ringing", call_sid)
        elif outcome is not None:
            detail = f"Twilio status {status}"
            if form.get("SipResponseCode"):
                detail += f" (SIP {form['SipResponseCode']})"
            self._context.dial_ended(request, outcome.value, detail)
        elif status == "completed":
            # Answered and over: closes only a record no stream closed, frees the slot.
            self._context.dial_ended(request, EndReason.COMPLETED.value,
                                     "closed by carrier status")

    async def cancel_ringing(self) -> None:
        """At shutdown: cancel the calls this process placed that still ring, so none
        is answered with nobody left to talk, and record them ``server_shutdown``. Twilio's
        ``canceled`` leaves a call already answered alone, so only a call it reports
        canceled is closed here."""
        ringing, self._ringing = self._ringing, {}
        now = time.monotonic()
        pending = [(sid, request) for sid, (request, until) in ringing.items() if until > now]
        if not pending or self.problem() is not None:
            return
        results = await asyncio.gather(*(self._cancel(sid) for sid, _ in pending))
        for (sid, request), canceled in zip(pending, results, strict=True):
            if canceled:
                log.info("call %s: Twilio call %s canceled at shutdown", request.call_id, sid)
                self._context.dial_ended(request, EndReason.SERVER_SHUTDOWN.value,
                                         STOPPED_WHILE_RINGING)

    async def _cancel(self, call_sid: str) -> bool:
        update = self._rest().calls(call_sid).update
        try:
            call = await asyncio.wait_for(asyncio.to_thread(update, status="canceled"),
                                          CANCEL_TIMEOUT_SECONDS)
        except (TwilioException, OSError, TimeoutError) as exc:
            log.warning("could not cancel Twilio call %s at shutdown: %r", call_sid, exc)
            return False
        return call.status == "canceled"

    def on_amd(self, form: Mapping[str, str]) -> None:
        """A signed asynchronous AMD callback: the verdict into the call's stream."""
        call_sid, answered_by = form.get("CallSid", ""), form.get("AnsweredBy", "")
        event = verdict_of(answered_by)
        if event is None or not call_sid:
            log.warning("AMD callback for %r with unknown AnsweredBy %r dropped", call_sid,
                        answered_by[:40])
            return
        delivered = self.live.deliver(call_sid, event)
        log.info("call %s: answered by %s%s", call_sid, answered_by,
                 "" if delivered else " (kept for its stream)")


def _bases(public_url: str) -> tuple[str, str]:
    """``PUBLIC_URL`` as the HTTP base of callbacks and the ``wss://`` base of streams."""
    base = urlsplit(public_url)
    root = f"{base.netloc}{base.path.rstrip('/')}"
    return f"{base.scheme}://{root}", f"wss://{root}"
