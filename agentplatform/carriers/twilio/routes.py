"""Twilio's HTTP and WebSocket endpoints: voice webhook, media stream, status callback.

Every endpoint checks ``X-Twilio-Signature`` and fails closed: with no
``TWILIO_AUTH_TOKEN`` nothing is accepted (only the explicitly insecure
``INSECURE_SKIP_TWILIO_SIGNATURE`` opens them, on a loopback host). The voice
webhook answers TwiML that connects the call to ``/twilio/media`` with a
single-use token minted for that CallSid; after ``</Connect>`` comes ``<Hangup/>``, so
closing the stream from our side ends the call. The routes know nothing of
models: ``handle_call`` gets an authenticated ``TwilioCallAudio`` and does the rest.
With ``MEDIA_LISTEN`` set the TwiML sends the stream to the media listener instead
(``media_listener.py``), which runs the same stream code (``TwilioEndpoints.media_stream``);
``/twilio/media`` here stays open.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, WebSocket
from starlette.datastructures import FormData

from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio import signature
from agentplatform.carriers.twilio.control import (
    TwilioCallControl,
    say_and_hang_up_twiml,
)
from agentplatform.carriers.twilio.outbound import (
    AMD_PATH,
    DIAL_STATUS_PATH,
    LiveStreams,
    TwilioDialer,
    stream_twiml,
)
from agentplatform.carriers.twilio.stream import (
    POLICY_VIOLATION,
    TOKEN_PARAMETER,
    TwilioCallAudio,
)
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.single_use import SingleUseStore

log = logging.getLogger(__name__)

VOICE_PATH = "/twilio/voice"
MEDIA_PATH = "/twilio/media"
STATUS_PATH = "/twilio/status"
XML = "application/xml"
UNKNOWN_NUMBER_MESSAGE = "Sorry, this number is not in service. Goodbye."


def stream_url(settings: Settings, host_header: str) -> str:
    """``wss://PUBLIC_HOST/twilio/media``: from ``public_url`` when set, else the Host header."""
    if settings.public_url:
        base = urlsplit(settings.public_url)
        return f"wss://{base.netloc}{base.path.rstrip('/')}{MEDIA_PATH}"
    return f"wss://{host_header}{MEDIA_PATH}"


def unknown_number_twiml() -> str:
    return say_and_hang_up_twiml(UNKNOWN_NUMBER_MESSAGE)


class TwilioEndpoints:
    """The Twilio endpoints (``router``) and the media stream's code (``media_stream``),
    which the FastAPI route and the media listener (``media_listener.py``) both run.

    ``tokens`` and ``control`` default to ones built from ``settings`` (control is
    ``None`` without credentials); tokens are spent in ``single_use`` (the application
    passes the store every process shares). Without ``TWILIO_AUTH_TOKEN`` every endpoint
    refuses (403, or close 1008). ``admit(call_sid, agent, from, to)`` answers ``None``
    to connect the call, or what to say before hanging up (spend controls, shutdown) —
    then no stream is opened. ``dialer`` takes the callbacks of calls we placed
    (``outbound.py``); ``live`` holds this process's streams by CallSid, for those
    callbacks to reach. ``media_url(host_header)`` is the stream URL the TwiML names
    (default: this server's ``/twilio/media``; the media listener's when it is on).
    """

    def __init__(
        self, *,
        settings: Settings,
        lookup_agent: Callable[[str], Awaitable[str | None]],
        handle_call: Callable[[TwilioCallAudio], Awaitable[None]],
        on_call_status: Callable[[str, str], None],
        tokens: StreamTokens | None = None,
        single_use: SingleUseStore | None = None,
        control: TwilioCallControl | None = None,
        admit: Callable[[str, str, str, str], Awaitable[str | None]] | None = None,
        dialer: TwilioDialer | None = None,
        live: LiveStreams | None = None,
        media_url: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens or StreamTokens.from_settings(settings, single_use=single_use)
        self.control = control if control is not None else TwilioCallControl.from_settings(settings)
        self.handle_call = handle_call
        self.live = live
        self.media_url = media_url or (lambda host: stream_url(settings, host))
        signature.announce(settings)
        self.router = _build_router(self, lookup_agent=lookup_agent,
                                    on_call_status=on_call_status, admit=admit, dialer=dialer)

    def upgrade_refusal(self, signed_url: str, websocket: WebSocket | Any) -> str | None:
        """Why the media upgrade is refused, or ``None`` to accept it: the signature
        must cover ``signed_url``, the URL Twilio connected to."""
        settings = self.settings
        if settings.insecure_skip_twilio_signature:
            return None
        if not settings.twilio_auth_token:
            log.warning("refused media stream upgrade: TWILIO_AUTH_TOKEN is not set, so "
                        "Twilio's signature cannot be checked")
            return "twilio disabled"
        if not signature.is_valid(settings.twilio_auth_token, signed_url,
                                  dict(websocket.query_params),
                                  websocket.headers.get(signature.SIGNATURE_HEADER)):
            log.warning("rejected media stream upgrade: bad or missing %s", signature.SIGNATURE_HEADER)
            return "bad signature"
        return None

    async def media_stream(self, websocket: WebSocket | Any, *, signed_url: str,
                           stream_url: str) -> None:
        """One media stream, start to end, on a Starlette ``WebSocket`` or the listener's
        ``MediaSocket``: the signature on ``signed_url``, the token, ``handle_call``.
        ``stream_url`` is where Twilio reopens the stream after ``send_dtmf``."""
        refusal = self.upgrade_refusal(signed_url, websocket)
        if refusal is not None:
            await websocket.accept()
            await websocket.close(code=POLICY_VIOLATION, reason=refusal)
            return
        call = TwilioCallAudio(websocket, tokens=self.tokens, control=self.control,
                               stream_url=stream_url)
        try:
            await call.accept_and_start()
        except CarrierError:
            return  # logged by the stream; the socket is closed, no session opened
        if call.resumes:  # Twilio's new stream after our <Play digits>: the call goes on
            await self._resume(call)
            return
        live = self.live
        if live is not None:
            live.add(call.info.call_id, call)
        try:
            await self.handle_call(call)
        except Exception:
            log.exception("call %s: handler failed", call.info.call_id)
        finally:
            if live is not None:
                live.remove(call.info.call_id, call)
            await call.close()

    async def listener_stream(self, websocket: Any, url: str) -> None:
        """A stream the media listener accepted: Twilio was sent to ``url`` and signed it."""
        await self.media_stream(websocket, signed_url=url, stream_url=url)

    async def _resume(self, call: TwilioCallAudio) -> None:
        live_call = self.live.get(call.info.call_id) if self.live is not None else None
        if live_call is None or not live_call.take_over(call):
            log.warning("call %s: a resumed stream with no call here sending DTMF; refused",
                        call.info.call_id)
            await call.refuse("no call to resume")
            return
        await live_call.wait_finished()  # the socket now carries that call


def build_router(**kwargs: Any) -> APIRouter:
    """The Twilio endpoints (``TwilioEndpoints``' arguments)."""
    return TwilioEndpoints(**kwargs).router


def _build_router(
    endpoints: TwilioEndpoints, *,
    lookup_agent: Callable[[str], Awaitable[str | None]],
    on_call_status: Callable[[str, str], None],
    admit: Callable[[str, str, str, str], Awaitable[str | None]] | None,
    dialer: TwilioDialer | None,
) -> APIRouter:
    settings = endpoints.settings
    tokens = endpoints.tokens
    auth_token = settings.twilio_auth_token
    skip_signature = settings.insecure_skip_twilio_signature
    router = APIRouter()

    async def signed_form(request: Request) -> FormData | None:
        """The form, or ``None`` when it is not signed by Twilio (or cannot be checked)."""
        form = await request.form()
        if skip_signature:
            return form
        if not auth_token:
            log.warning("refused %s: TWILIO_AUTH_TOKEN is not set, so Twilio's signature "
                        "cannot be checked", request.url.path)
            return None
        url = signature.public_request_url(request.url, settings.public_url)
        if signature.is_valid(auth_token, url, form, request.headers.get(signature.SIGNATURE_HEADER)):
            return form
        log.warning("rejected %s: bad or missing %s", request.url.path, signature.SIGNATURE_HEADER)
        return None

    @router.post(VOICE_PATH)
    async def voice(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response(status_code=403)
        call_sid, to = str(form.get("CallSid", "")), str(form.get("To", ""))
        agent = await lookup_agent(to)
        if not agent or not call_sid:
            log.info("call %s to %s: no agent answers this number", call_sid, to)
            return Response(unknown_number_twiml(), media_type=XML)
        caller = str(form.get("From", ""))
        refusal = await admit(call_sid, agent, caller, to) if admit is not None else None
        if refusal is not None:
            return Response(say_and_hang_up_twiml(refusal), media_type=XML)
        token = tokens.mint(call_sid, agent, settings.stream_token_ttl_seconds)
        params = {"agent": agent, TOKEN_PARAMETER: token, "from": caller, "to": to}
        url = endpoints.media_url(request.headers.get("host", request.url.netloc))
        return Response(stream_twiml(url, params), media_type=XML)

    @router.websocket(MEDIA_PATH)
    async def media(websocket: WebSocket) -> None:
        host = websocket.headers.get("host", websocket.url.netloc)
        signed_url = signature.stream_upgrade_url(websocket.url, websocket.headers.get("host", ""),
                                                  settings.public_url)
        await endpoints.media_stream(websocket, signed_url=signed_url,
                                     stream_url=endpoints.media_url(host))

    @router.post(STATUS_PATH)
    async def status(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response(status_code=403)
        call_sid, call_status = str(form.get("CallSid", "")), str(form.get("CallStatus", ""))
        if call_sid and call_status:
            on_call_status(call_sid, call_status)
        return Response(status_code=204)

    @router.post(DIAL_STATUS_PATH)
    async def dial_status(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response(status_code=403)
        call_id = request.query_params.get("call", "")
        agent = request.query_params.get("agent", "")
        if dialer is None or not call_id:
            return Response(status_code=404)
        dialer.on_dial_status(call_id, agent, _text_fields(form))
        return Response(status_code=204)

    @router.post(AMD_PATH)
    async def amd(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response(status_code=403)
        if dialer is None:
            return Response(status_code=404)
        dialer.on_amd(_text_fields(form))
        return Response(status_code=204)

    return router


def _text_fields(form: FormData) -> dict[str, str]:
    """A callback's form fields as text (Twilio sends no files)."""
    return {key: value for key, value in form.items() if isinstance(value, str)}
