"""The Twilio endpoints: signatures, TwiML, status callbacks, and the media socket's gate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentplatform.carriers.twilio.routes import UNKNOWN_NUMBER_MESSAGE, build_router
from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.config import Settings
from agentplatform.single_use import DatabaseSingleUse, MemorySingleUse, SingleUseStore
from agentplatform.storage.database import create_tables, make_engine
from agentplatform.testing import twilio_wire as twilio

AUTH = "twilio-auth-token"
CALL = "CA" + "c" * 32
NUMBERS = {"+15550100": "front-desk"}


async def agent_for(number: str) -> str | None:
    return NUMBERS.get(number)
FORM = {"CallSid": CALL, "AccountSid": "AC1", "From": "+15551234", "To": "+15550100", "CallStatus": "ringing"}


class App:
    """The router under test plus what its callbacks saw."""

    def __init__(self, single_use: SingleUseStore | None = None, **settings: object) -> None:
        settings.setdefault("twilio_auth_token", AUTH)
        self.settings = Settings(_env_file=None, stream_token_secret="tok-secret", **settings)
        self.single_use = single_use or MemorySingleUse()
        self.tokens = StreamTokens.from_settings(self.settings, single_use=self.single_use)
        self.calls: list[TwilioCallAudio] = []
        self.statuses: list[tuple[str, str]] = []
        self.handled = asyncio.Event()
        self.app = FastAPI()
        self.app.include_router(build_router(
            settings=self.settings, lookup_agent=agent_for, handle_call=self.handle_call,
            on_call_status=lambda sid, status: self.statuses.append((sid, status)), tokens=self.tokens,
        ))

    async def handle_call(self, call: TwilioCallAudio) -> None:
        self.calls.append(call)
        self.handled.set()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")


def parse(xml: str) -> ElementTree.Element:
    return ElementTree.fromstring(xml)


def signed(path: str, form: dict[str, str] = FORM) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(AUTH, f"http://testserver{path}", form)}


async def test_voice_answers_connect_stream_with_parameters_then_hangup() -> None:
    app = App()
    async with app.client() as client:
        response = await client.post("/twilio/voice", data=FORM, headers=signed("/twilio/voice"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = parse(response.text)
    assert [verb.tag for verb in root] == ["Connect", "Hangup"]
    [stream] = root.find("Connect")
    assert stream.tag == "Stream"
    assert stream.get("url") == "wss://testserver/twilio/media"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert set(params) == {"agent", "token", "from", "to"}
    assert (params["agent"], params["from"], params["to"]) == ("front-desk", "+15551234", "+15550100")
    assert app.tokens.verify(params["token"], CALL).agent == "front-desk"


async def test_stream_url_uses_public_url_when_set() -> None:
    app = App(public_url="https://calls.example.com/")
    headers = {SIGNATURE_HEADER: sign(AUTH, "https://calls.example.com/twilio/voice", FORM)}
    async with app.client() as client:
        response = await client.post("/twilio/voice", data=FORM, headers=headers)
    assert parse(response.text).find("Connect/Stream").get("url") == "wss://calls.example.com/twilio/media"


async def test_unknown_number_gets_a_polite_goodbye_and_hangup() -> None:
    app = App()
    form = {**FORM, "To": "+19990000"}
    async with app.client() as client:
        response = await client.post("/twilio/voice", data=form, headers=signed("/twilio/voice", form))
    root = parse(response.text)
    assert [verb.tag for verb in root] == ["Say", "Hangup"]
    assert root.find("Say").text == UNKNOWN_NUMBER_MESSAGE


@pytest.mark.parametrize("headers", [
    {},
    {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"},
    {SIGNATURE_HEADER: sign("another-token", "http://testserver/twilio/voice", FORM)},
    {SIGNATURE_HEADER: sign(AUTH, "http://testserver/twilio/voice", {**FORM, "To": "+1"})},
])
async def test_voice_with_missing_or_bad_signature_is_403(headers: dict[str, str]) -> None:
    app = App(twilio_auth_token=AUTH)
    async with app.client() as client:
        response = await client.post("/twilio/voice", data=FORM, headers=headers)
    assert response.status_code == 403


async def test_voice_with_good_signature_is_answered() -> None:
    app = App(twilio_auth_token=AUTH)
    headers = {SIGNATURE_HEADER: sign(AUTH, "http://testserver/twilio/voice", FORM)}
    async with app.client() as client:
        response = await client.post("/twilio/voice", data=FORM, headers=headers)
    assert response.status_code == 200
    assert parse(response.text).find("Connect/Stream") is not None


async def test_behind_a_proxy_the_signature_is_checked_on_the_public_url() -> None:
    app = App(twilio_auth_token=AUTH, public_url="https://calls.example.com")
    public = {SIGNATURE_HEADER: sign(AUTH, "https://calls.example.com/twilio/voice", FORM)}
    internal = {SIGNATURE_HEADER: sign(AUTH, "http://testserver/twilio/voice", FORM)}
    async with app.client() as client:
        assert (await client.post("/twilio/voice", data=FORM, headers=public)).status_code == 200
        assert (await client.post("/twilio/voice", data=FORM, headers=internal)).status_code == 403


async def test_status_callback_reports_and_answers_204() -> None:
    app = App(twilio_auth_token=AUTH)
    form = {"CallSid": CALL, "CallStatus": "completed"}
    async with app.client() as client:
        unsigned = await client.post("/twilio/status", data=form)
        signed = await client.post("/twilio/status", data=form,
                                   headers={SIGNATURE_HEADER: sign(AUTH, "http://testserver/twilio/status", form)})
    assert (unsigned.status_code, signed.status_code) == (403, 204)
    assert app.statuses == [(CALL, "completed")]


# ------------------------------------------------------------ the media socket


async def _open(base_url: str, headers: dict[str, str], parameters: dict[str, str]):
    ws = await connect(base_url.replace("http", "ws") + "/twilio/media", additional_headers=headers)
    with contextlib.suppress(ConnectionClosed):  # a rejected upgrade may be closed already
        await ws.send(twilio.encode(twilio.connected()))
        await ws.send(twilio.encode(twilio.start(stream_sid="MZ1", account_sid="AC1", call_sid=CALL,
                                                 custom_parameters=parameters)))
    return ws


def _upgrade_signature(base_url: str) -> dict[str, str]:
    host = base_url.removeprefix("http://")
    return {SIGNATURE_HEADER: sign(AUTH, f"wss://{host}/twilio/media", {})}


Case = Callable[[App, str], tuple[dict[str, str], dict[str, str]]]


@pytest.mark.parametrize("case", [
    pytest.param(lambda app, url: ({}, {"token": app.tokens.mint(CALL, "front-desk", 60)}), id="unsigned-upgrade"),
    pytest.param(lambda app, url: ({SIGNATURE_HEADER: sign(AUTH, "wss://elsewhere/twilio/media", {})},
                                   {"token": app.tokens.mint(CALL, "front-desk", 60)}), id="wrong-url-signature"),
    pytest.param(lambda app, url: (_upgrade_signature(url), {}), id="no-token"),
    pytest.param(lambda app, url: (_upgrade_signature(url), {"token": app.tokens.mint("CA-other", "front-desk", 60)}),
                 id="other-call-token"),
])
async def test_media_socket_closes_1008_and_never_handles_the_call(serve, case: Case) -> None:
    app = App(twilio_auth_token=AUTH)
    async with serve(app.app) as base_url:
        headers, parameters = case(app, base_url)
        ws = await _open(base_url, headers, parameters)
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1008
    assert app.calls == []


async def test_media_socket_with_signature_and_token_hands_the_call_over(serve) -> None:
    app = App(twilio_auth_token=AUTH)
    async with serve(app.app) as base_url:
        parameters = {"agent": "front-desk", "token": app.tokens.mint(CALL, "front-desk", 60), "from": "+1", "to": "+2"}
        ws = await _open(base_url, _upgrade_signature(base_url), parameters)
        await asyncio.wait_for(app.handled.wait(), 5)
        await asyncio.wait_for(ws.wait_closed(), 5)  # handle_call returned: the route closes the stream
    [call] = app.calls
    assert (call.info.call_id, call.info.agent, call.info.from_number, call.info.to_number) == (CALL, "front-desk", "+1", "+2")
    assert ws.close_code == 1000



# ------------------------------------------------------------ no auth token: fail closed


async def test_without_an_auth_token_the_webhooks_refuse_even_well_formed_requests(caplog) -> None:
    app = App(twilio_auth_token="")
    status_form = {"CallSid": CALL, "CallStatus": "completed"}
    async with app.client() as client:
        voice = await client.post("/twilio/voice", data=FORM)
        status = await client.post("/twilio/status", data=status_form)
    assert (voice.status_code, status.status_code) == (403, 403)
    assert app.statuses == []
    assert "TWILIO_AUTH_TOKEN is not set" in caplog.text


async def test_without_an_auth_token_the_media_upgrade_closes_1008(serve) -> None:
    app = App(twilio_auth_token="")
    async with serve(app.app) as base_url:
        parameters = {"agent": "front-desk", "token": app.tokens.mint(CALL, "front-desk", 60)}
        ws = await _open(base_url, {}, parameters)
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1008
    assert app.calls == []


def test_without_an_auth_token_start_up_warns_that_twilio_is_disabled(caplog) -> None:
    App(twilio_auth_token="")
    assert "Twilio is disabled until TWILIO_AUTH_TOKEN is set" in caplog.text


async def test_the_insecure_setting_lets_unsigned_webhooks_in_and_says_so(caplog) -> None:
    app = App(twilio_auth_token="", insecure_skip_twilio_signature=True)
    assert "INSECURE_SKIP_TWILIO_SIGNATURE" in caplog.text
    async with app.client() as client:
        response = await client.post("/twilio/voice", data=FORM)
    assert response.status_code == 200


# ------------------------------------------------------------ single-use stream tokens


async def _stream_once(base_url: str, token: str) -> int | None:
    parameters = {"agent": "front-desk", "token": token, "from": "+1", "to": "+2"}
    ws = await _open(base_url, _upgrade_signature(base_url), parameters)
    await asyncio.wait_for(ws.wait_closed(), 5)
    return ws.close_code


async def test_a_stream_token_opens_one_stream_only(serve) -> None:
    app = App()
    token = app.tokens.mint(CALL, "front-desk", 60)
    async with serve(app.app) as base_url:
        first = await _stream_once(base_url, token)
        replay = await _stream_once(base_url, token)
    assert (first, replay) == (1000, 1008)
    assert len(app.calls) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_servers_on_one_database_refuse_each_others_used_tokens(
        serve, tmp_path, backend, request) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        create_tables(make_engine(url))
    else:
        url = request.getfixturevalue("postgres_engine").url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    first, second = (App(single_use=DatabaseSingleUse(engine)) for engine in engines)
    token = first.tokens.mint(CALL, "front-desk", 60)  # the same secret signs for both
    async with serve(first.app) as url_a, serve(second.app) as url_b:
        assert await _stream_once(url_a, token) == 1000
        assert await _stream_once(url_b, token) == 1008
    assert (len(first.calls), len(second.calls)) == (1, 0)
    for engine in engines:
        engine.dispose()
