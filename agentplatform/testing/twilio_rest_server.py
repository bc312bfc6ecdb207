"""A simulated Twilio REST API that places calls to scripted callees, over real sockets.

What it serves, in Twilio's URL shapes (form-encoded, HTTP basic auth with the
account sid and auth token, JSON answers like Twilio's):

* ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` — ``calls.create``: ``To``,
  ``From`` and ``Twiml`` (or ``Url``) required; answers 201 with the call resource
  (``sid``, ``status: queued``…), or Twilio's error body (``code``, ``message``,
  ``more_info``, ``status``).
* ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` — ``calls(sid).update``:
  ``Status=completed|canceled`` hangs up; ``Twiml`` replaces what runs (``<Dial>`` a
  transfer, ``<Say>``/``<Hangup>``, ``<Play digits>`` then ``<Connect><Stream>`` a
  reconnected stream). 404 with code 20404 for a call that does not exist.

Then it does what Twilio does with the call: posts the status callback for each
event asked for (``initiated``, ``ringing``, ``answered`` as ``in-progress``,
``completed``) or the final ``busy``/``no-answer``/``failed``; for an answered call
it reads the TwiML, connects the callee's media stream to the ``<Stream>`` URL (the
simulated caller of ``twilio_caller.py``, which plays what the server sends on
Twilio's clock), and, when ``AsyncAmd`` was asked for, posts the ``AnsweredBy``
callback. Every callback is signed with ``X-Twilio-Signature`` over its URL and form.

It also keeps the account's phone numbers (``numbers=[…]``), as Twilio's
IncomingPhoneNumbers resource does:

* ``GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=…`` —
  the numbers (filtered to one by ``PhoneNumber``), in Twilio's list page shape.
* ``POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json`` — sets
  ``VoiceUrl``, ``VoiceMethod``, ``StatusCallback``, ``StatusCallbackMethod``; 404 with
  code 20404 for a number the account does not have.

Callees are scripted per number (``Callee``): a person who answers and listens, a
machine that plays a greeting and a beep (and is reported ``machine_end_beep``
once the beep has played, as ``DetectMessageEnd`` does), a busy line, one that rings
out, one that fails.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentplatform.audio.frames import tone
from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.testing.loopback import LoopbackServer
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller, parse_twiml

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
SIMULATED_ACCOUNT_SID = "AC" + "5" * 32
MAX_TWIML_CHARS = 4000
BEEP = tone(1000, 500, 8000, amplitude=0.5)
# What a machine says before its beep: about two seconds of voice-like tone.
MACHINE_GREETING = tone(300, 2000, 8000, amplitude=0.3)

CalleeKind = Literal["human", "machine", "busy", "no_answer", "failed"]


@dataclass(slots=True)
class Callee:
    """How the number answers. ``answered_by`` overrides what AMD reports."""

    kind: CalleeKind = "human"
    answered_by: str = ""
    ring_seconds: float = 0.2
    amd_after_seconds: float = 1.0  # a person: verdict this long after answering
    greeting: bytes = MACHINE_GREETING  # a machine's greeting (PCM16 8 kHz), then BEEP

    def verdict(self) -> str:
        return self.answered_by or ("machine_end_beep" if self.kind == "machine" else "human")


@dataclass(slots=True)
class Callback:
    """A callback the simulator posted, and what our server answered."""

    url: str
    form: dict[str, str]
    status: int
    at: float


@dataclass(slots=True)
class SimulatedCall:
    sid: str
    to: str
    from_: str
    callee: Callee
    create_form: list[tuple[str, str]]
    twiml: str
    status: str = "queued"
    callbacks: list[Callback] = field(default_factory=list)
    updates: list[dict[str, str]] = field(default_factory=list)
    streams: list[TwilioCaller] = field(default_factory=list)
    transferred_to: str = ""
    digits_played: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    amd_posted_at: float | None = None
    greeting_done_at: float | None = None  # a machine: when its beep finished
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    answered_at: float | None = None
    reconnecting: bool = False  # new TwiML stopped the stream; the next one is coming

    def field(self, name: str) -> str:
        return next((v for k, v in self.create_form if k == name), "")

    def fields(self, name: str) -> list[str]:
        return [v for k, v in self.create_form if k == name]

    @property
    def caller(self) -> TwilioCaller | None:
        """The live (latest) media stream of the call."""
        return self.streams[-1] if self.streams else None

    def statuses(self) -> list[str]:
        return [c.form.get("CallStatus", "") for c in self.callbacks if "CallStatus" in c.form]


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message,
                         "more_info": f"https://www.twilio.com/docs/errors/{code}",
                         "status": status}, status_code=status)


class TwilioRestServer:
    """``async with TwilioRestServer(callees={"+1555…": Callee("machine")}) as twilio:``
    then point ``TWILIO_API_BASE_URL`` at ``twilio.url``."""

    def __init__(self, *, callees: dict[str, Callee] | None = None,
                 account_sid: str = SIMULATED_ACCOUNT_SID,
                 auth_token: str = SIMULATED_AUTH_TOKEN,
                 numbers: list[str] | tuple[str, ...] = ()) -> None:
        self.callees = dict(callees or {})
        # The account's numbers: sid → the resource's fields (PN…, phone_number, voice_url…).
        self.numbers: dict[str, dict[str, str]] = {
            "PN" + secrets.token_hex(16): {"phone_number": n, "voice_url": "",
                                           "voice_method": "POST", "status_callback": "",
                                           "status_callback_method": "POST"}
            for n in numbers}
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: dict[str, SimulatedCall] = {}
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []  # (path, form)
        self.rejected: list[tuple[int, int, str]] = []  # (status, code, message)
        self._tasks: set[asyncio.Task[None]] = set()
        base = f"/{API_VERSION}/Accounts/{{account}}/Calls"
        numbers = f"/{API_VERSION}/Accounts/{{account}}/IncomingPhoneNumbers"
        app = Starlette(routes=[
            Route(base + ".json", self._create, methods=["POST"]),
            Route(base + "/{sid}.json", self._update, methods=["POST"]),
            Route(numbers + ".json", self._list_numbers, methods=["GET"]),
            Route(numbers + "/{sid}.json", self._update_number, methods=["POST"]),
        ])
        self._server = LoopbackServer(app)

    @property
    def url(self) -> str:
        return self._server.base_url

    async def __aenter__(self) -> TwilioRestServer:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for call in self.calls.values():
            for stream in call.streams:
                with contextlib.suppress(Exception):
                    await stream.hang_up()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.stop()

    async def wait_for_call(self, timeout: float = 5.0) -> SimulatedCall:
        """The first call placed."""
        async with asyncio.timeout(timeout):
            while not self.calls:
                await asyncio.sleep(0.02)
        return next(iter(self.calls.values()))

    # ------------------------------------------------------------ REST

    def _authorized(self, request: Request, account: str) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        ok = (scheme.lower() == "basic" and hmac.compare_digest(user, self.account_sid)
              and hmac.compare_digest(password, self.auth_token) and account == self.account_sid)
        return None if ok else self._reject(401, 20003, "Authenticate")

    def _reject(self, status: int, code: int, message: str) -> JSONResponse:
        self.rejected.append((status, code, message))
        return _error(status, code, message)

    async def _form(self, request: Request) -> list[tuple[str, str]]:
        form: FormData = await request.form()
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        self.requests.append((request.url.path, items))
        return items

    async def _create(self, request: Request) -> Response:
        account = request.path_params["account"]
        refused = self._authorized(request, account)
        if refused is not None:
            return refused
        form = await self._form(request)
        values = dict(form)
        to, from_ = values.get("To", ""), values.get("From", "")
        twiml = values.get("Twiml", "")
        if not to:
            return self._reject(400, 21201, "No 'To' number is specified")
        if not from_:
            return self._reject(400, 21603, "A 'From' phone number is required.")
        if not twiml and not values.get("Url"):
            return self._reject(400, 21205, "Url parameter is required.")
        if len(twiml) > MAX_TWIML_CHARS:
            return self._reject(400, 13002, "Twiml parameter is too long.")
        try:
            ElementTree.fromstring(twiml)
        except ElementTree.ParseError:
            return self._reject(400, 12100, "Document parse failure")
        if to not in self.callees:
            return self._reject(400, 21211, f"Invalid 'To' Phone Number: {to}")
        sid = "CA" + secrets.token_hex(16)
        call = SimulatedCall(sid=sid, to=to, from_=from_, callee=self.callees[to],
                             create_form=form, twiml=twiml)
        self.calls[sid] = call
        self._spawn(self._run(call))
        return JSONResponse(self._resource(call), status_code=201)

    def number_of(self, phone_number: str) -> dict[str, str] | None:
        """The resource fields of one of the account's numbers."""
        return next((n for n in self.numbers.values() if n["phone_number"] == phone_number),
                    None)

    def _number_resource(self, sid: str) -> dict[str, object]:
        fields = self.numbers[sid]
        return {"sid": sid, "account_sid": self.account_sid, "friendly_name":
                fields["phone_number"], "api_version": API_VERSION, **fields,
                "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/"
                       f"{sid}.json"}

    async def _list_numbers(self, request: Request) -> Response:
        account = request.path_params["account"]
        refused = self._authorized(request, account)
        if refused is not None:
            return refused
        self.requests.append((request.url.path, list(request.query_params.multi_items())))
        wanted = request.query_params.get("PhoneNumber")
        found = [self._number_resource(sid) for sid, n in self.numbers.items()
                 if wanted is None or n["phone_number"] == wanted]
        uri = f"/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers.json"
        return JSONResponse({"incoming_phone_numbers": found, "page": 0, "page_size": 50,
                             "start": 0, "end": max(len(found) - 1, 0), "uri": uri,
                             "first_page_uri": uri, "next_page_uri": None,
                             "previous_page_uri": None})

    async def _update_number(self, request: Request) -> Response:
        account = request.path_params["account"]
        refused = self._authorized(request, account)
        if refused is not None:
            return refused
        form = dict(await self._form(request))
        sid = request.path_params["sid"]
        if sid not in self.numbers:
            return self._reject(404, 20404, f"The requested resource {request.url.path} "
                                             "was not found")
        for name, key in (("VoiceUrl", "voice_url"), ("VoiceMethod", "voice_method"),
                          ("StatusCallback", "status_callback"),
                          ("StatusCallbackMethod", "status_callback_method")):
            if name in form:
                self.numbers[sid][key] = form[name]
        return JSONResponse(self._number_resource(sid))

    def _resource(self, call: SimulatedCall) -> dict[str, object]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call.sid}.json"
        return {
            "sid": call.sid, "account_sid": self.account_sid, "to": call.to,
            "to_formatted": call.to, "from": call.from_, "from_formatted": call.from_,
            "status": call.status, "direction": "outbound-api", "api_version": API_VERSION,
            "answered_by": None, "parent_call_sid": None, "phone_number_sid": None,
            "start_time": None, "end_time": None, "duration": None, "price": None,
            "price_unit": "USD", "caller_name": None, "forwarded_from": None,
            "group_sid": None, "queue_time": "0", "trunk_sid": None, "uri": uri,
            "date_created": None, "date_updated": None, "subresource_uris": {},
        }

    async def _update(self, request: Request) -> Response:
        account = request.path_params["account"]
        refused = self._authorized(request, account)
        if refused is not None:
            return refused
        form = dict(await self._form(request))
        call = self.calls.get(request.path_params["sid"])
        if call is None or call.ended.is_set():
            return self._reject(404, 20404, "The requested resource was not found")
        call.updates.append(form)
        if form.get("Status") == "canceled":  # only a call not yet answered
            if call.answered_at is None:
                call.status = "canceled"
                self._spawn(self._final(call, "canceled"))
        elif form.get("Status") == "completed":
            self._spawn(self._end(call))
        elif form.get("Twiml"):
            self._spawn(self._run_new_twiml(call, form["Twiml"]))
        return JSONResponse(self._resource(call), status_code=200)

    # ------------------------------------------------------------ the call

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: SimulatedCall) -> None:
        callee = call.callee
        await self._status(call, "initiated", event="initiated")
        if callee.kind == "failed":
            await self._final(call, "failed")
            return
        await asyncio.sleep(0.05)
        if call.status == "canceled":
            return
        await self._status(call, "ringing", event="ringing")
        await asyncio.sleep(callee.ring_seconds)
        if call.status == "canceled":  # canceled while it rang
            return
        if callee.kind == "busy":
            await self._final(call, "busy")
            return
        if callee.kind == "no_answer":
            await self._final(call, "no-answer")
            return
        call.answered_at = time.monotonic()
        await self._status(call, "in-progress", event="answered")
        answer = parse_twiml(call.twiml)
        if not answer.stream_url:
            await self._final(call, "completed")
            return
        stream = await self._connect(call, answer.stream_url, answer.parameters)
        amd = call.field("AsyncAmd") == "true" and bool(call.field("AsyncAmdStatusCallback"))
        if callee.kind == "machine":
            await stream.say(callee.greeting + BEEP)
            call.greeting_done_at = time.monotonic()
            if amd:
                await self._amd(call)
        elif amd:
            await asyncio.sleep(callee.amd_after_seconds)
            await self._amd(call)
        await self._wait_streams_closed(call)
        if not call.ended.is_set():
            await self._final(call, "completed")

    async def _connect(self, call: SimulatedCall, url: str,
                       parameters: dict[str, str]) -> TwilioCaller:
        parts = urlsplit(url)
        stream = TwilioCaller(f"http://{parts.netloc}", to=call.to, from_=call.from_,
                              auth_token=self.auth_token)
        stream.call_sid, stream.account_sid = call.sid, self.account_sid
        answer = parse_twiml(f'<Response><Connect><Stream url="{url}"/></Connect></Response>')
        answer.parameters = dict(parameters)
        await stream.stream(answer)
        call.streams.append(stream)
        return stream

    async def _wait_streams_closed(self, call: SimulatedCall) -> None:
        """Until the latest stream is closed and no new one replaced it."""
        while not call.ended.is_set():
            current = call.caller
            assert current is not None
            await current.wait_closed(24 * 3600)
            while call.reconnecting:  # <Play digits> plays, then the next stream opens
                await asyncio.sleep(0.02)
            if call.caller is current:
                return

    async def _run_new_twiml(self, call: SimulatedCall, twiml: str) -> None:
        """New TwiML takes over: the stream gets ``stop`` and closes, then the verbs
        run in order (tones at ten keys a second, a new stream, a dial, a say)."""
        root = ElementTree.fromstring(twiml)
        connect = root.find("Connect")
        stream_el = connect.find("Stream") if connect is not None else None
        call.reconnecting = stream_el is not None
        current = call.caller
        if current is not None:
            await current.hang_up()
        for verb in root.findall("Play"):
            digits = verb.get("digits", "")
            call.digits_played.append(digits)
            await asyncio.sleep(0.1 * len(digits))
        if stream_el is not None:
            params = {p.get("name", ""): p.get("value", "") for p in stream_el.findall("Parameter")}
            try:
                await self._connect(call, stream_el.get("url", ""), params)
            finally:
                call.reconnecting = False
            return
        dial = root.find("Dial")
        if dial is not None:
            number = dial.find("Number")
            call.transferred_to = (number.text if number is not None else dial.text) or ""
        call.said.extend(v.text or "" for v in root.findall("Say"))
        await self._final(call, "completed")

    async def _end(self, call: SimulatedCall) -> None:
        for stream in call.streams:
            await stream.hang_up()
        await self._final(call, "completed")

    # ------------------------------------------------------------ callbacks

    async def _status(self, call: SimulatedCall, status: str, *, event: str) -> None:
        call.status = status
        url = call.field("StatusCallback")
        if url and event in call.fields("StatusCallbackEvent"):
            await self._post(call, url, self._call_form(call, status))

    async def _final(self, call: SimulatedCall, status: str) -> None:
        if call.ended.is_set():
            return
        call.ended.set()
        call.status = status
        form = self._call_form(call, status)
        if call.answered_at is not None:
            form["CallDuration"] = str(round(time.monotonic() - call.answered_at))
        url = call.field("StatusCallback")
        # Twilio always reports the end to a status callback; "completed" is also the
        # answer to asking for that event.
        if url:
            await self._post(call, url, form)

    def _call_form(self, call: SimulatedCall, status: str) -> dict[str, str]:
        return {"CallSid": call.sid, "AccountSid": self.account_sid, "From": call.from_,
                "To": call.to, "CallStatus": status, "Direction": "outbound-api",
                "ApiVersion": API_VERSION}

    async def _amd(self, call: SimulatedCall) -> None:
        form = {"CallSid": call.sid, "AccountSid": self.account_sid,
                "AnsweredBy": call.callee.verdict(),
                "MachineDetectionDuration": str(round(
                    (time.monotonic() - (call.answered_at or time.monotonic())) * 1000))}
        call.amd_posted_at = time.monotonic()
        await self._post(call, call.field("AsyncAmdStatusCallback"), form)

    async def _post(self, call: SimulatedCall, url: str, form: dict[str, str]) -> None:
        headers = {SIGNATURE_HEADER: sign(self.auth_token, url, form)}
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.post(url, data=form, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            log.warning("callback to %s failed: %r", url, exc)
            status = 0
        call.callbacks.append(Callback(url, form, status, time.monotonic()))


__all__ = ["BEEP", "Callee", "SimulatedCall", "TwilioRestServer", "SIMULATED_ACCOUNT_SID"]
