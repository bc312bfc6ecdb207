"""Media streams on the compiled listener (``MEDIA_LISTEN``): the TwiML sends Twilio there,
a whole call runs over it, and it refuses what the main port's route refuses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentplatform.audio.frames import tone
from agentplatform.carriers.base import CarrierEvent, InboundAudio, StreamStopped
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio import media_listener
from agentplatform.carriers.twilio.media_listener import (
    MediaListener,
    MediaSocket,
    media_stream_url,
    parse_listen,
)
from agentplatform.carriers.twilio.routes import TwilioEndpoints
from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.config import Settings
from agentplatform.serving import MEDIA_FD_ENV
from agentplatform.single_use import MemorySingleUse
from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.testing import twilio_wire as twilio
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller

from tests.e2e.conftest import AGENT_NUMBER, closed_call_record, write_agent
from tests.e2e.processes import fleet_env, servers

AUTH = "twilio-auth-token"
CALL = "CA" + "c" * 32
SID = "MZ" + "a" * 32
SPEECH = tone(440, 1200, 8000, amplitude=0.4)


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = dict(twilio_auth_token=AUTH, stream_token_secret="tok-secret",
                                     media_listen="127.0.0.1:0")
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# ------------------------------------------------------------ where Twilio is sent


def test_listen_address_is_host_and_port() -> None:
    assert parse_listen("0.0.0.0:8765") == ("0.0.0.0", 8765)
    assert parse_listen("[::1]:8765") == ("::1", 8765)
    with pytest.raises(ValueError, match="MEDIA_LISTEN"):
        parse_listen("8765")


@pytest.mark.parametrize(("overrides", "host", "url"), [
    ({}, "127.0.0.1:8000", "wss://127.0.0.1:8765/twilio/media"),
    ({}, "[::1]:8000", "wss://[::1]:8765/twilio/media"),
    ({"public_url": "https://calls.example.com/base"}, "internal:8000",
     "wss://calls.example.com:8765/twilio/media"),
    ({"media_public_url": "wss://media.example.com"}, "internal:8000",
     "wss://media.example.com/twilio/media"),
    ({"media_public_url": "wss://media.example.com:443/voice/twilio/media/",
      "public_url": "https://calls.example.com"}, "internal:8000",
     "wss://media.example.com:443/voice/twilio/media"),
])
def test_the_stream_url_names_the_listener(overrides: dict[str, str], host: str, url: str) -> None:
    assert media_stream_url(settings(**overrides), host, 8765) == url


def test_without_media_listen_there_is_no_listener() -> None:
    assert MediaListener.from_settings(settings(media_listen="")) is None


def test_unsigned_streams_are_refused_on_a_listener_off_loopback() -> None:
    from agentplatform.errors import PlatformError

    with pytest.raises(PlatformError, match="MEDIA_LISTEN"):
        MediaListener.from_settings(settings(twilio_auth_token="", media_listen="0.0.0.0:8765",
                                             insecure_skip_twilio_signature=True))


# ------------------------------------------------------------ the endpoints on a listener


class Listening:
    """The Twilio endpoints with their stream code served by a media listener."""

    def __init__(self, handle: Callable[[TwilioCallAudio], Awaitable[None]] | None = None,
                 **overrides: object) -> None:
        self.settings = settings(**overrides)
        self.tokens = StreamTokens.from_settings(self.settings, single_use=MemorySingleUse())
        self.calls: list[TwilioCallAudio] = []
        self.handled = asyncio.Event()
        self._handle = handle
        listener = MediaListener.from_settings(self.settings)
        assert listener is not None
        self.listener = listener
        self.endpoints = TwilioEndpoints(
            settings=self.settings, lookup_agent=self.agent_for, handle_call=self.handle_call,
            on_call_status=lambda sid, status: None, tokens=self.tokens,
            media_url=listener.stream_url)

    @staticmethod
    async def agent_for(number: str) -> str | None:
        return "front-desk" if number == "+15550100" else None

    async def handle_call(self, call: TwilioCallAudio) -> None:
        self.calls.append(call)
        try:
            if self._handle is not None:
                await self._handle(call)
        finally:
            self.handled.set()

    def signed(self, url: str | None = None) -> dict[str, str]:
        """Signed as Twilio signs the URL the TwiML named (the listener's, by default)."""
        return {SIGNATURE_HEADER: sign(AUTH, url or f"wss://127.0.0.1:{self.listener.port}/twilio/media", {})}

    def parameters(self, call_sid: str = CALL) -> dict[str, str]:
        return {"agent": "front-desk", "token": self.tokens.mint(call_sid, "front-desk", 60),
                "from": "+1", "to": "+2"}


@contextlib.asynccontextmanager
async def listening(app: Listening) -> AsyncIterator[Listening]:
    await app.listener.start(app.endpoints.listener_stream)
    try:
        yield app
    finally:
        await app.listener.stop(grace=1.0)


async def open_stream(app: Listening, headers: dict[str, str], parameters: dict[str, str],
                      host: str = "127.0.0.1") -> ClientConnection:
    """A stream to the listener, its ``Host`` header naming ``host``."""
    port = app.listener.port
    ws = await connect(f"ws://{host}:{port}/twilio/media", host="127.0.0.1", port=port,
                       additional_headers=headers)
    with contextlib.suppress(ConnectionClosed):  # a refused stream may be closed already
        await ws.send(twilio.encode(twilio.connected()))
        await ws.send(twilio.encode(twilio.start(stream_sid=SID, account_sid="AC1", call_sid=CALL,
                                                 custom_parameters=parameters)))
    return ws


async def test_the_voice_webhook_sends_the_stream_to_the_listener() -> None:
    app = Listening()
    form = {"CallSid": CALL, "From": "+15551234", "To": "+15550100"}
    async with listening(app):
        transport = httpx.ASGITransport(app=_fastapi(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post("/twilio/voice", data=form, headers={
                SIGNATURE_HEADER: sign(AUTH, "http://testserver/twilio/voice", form)})
        port = app.listener.port
    assert response.status_code == 200
    assert f'url="wss://testserver:{port}/twilio/media"' in response.text


def _fastapi(app: Listening):  # noqa: ANN202
    from fastapi import FastAPI

    api = FastAPI()
    api.include_router(app.endpoints.router)
    return api


async def test_a_signed_stream_with_its_token_is_handed_over_and_closed_normally() -> None:
    app = Listening()
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await asyncio.wait_for(app.handled.wait(), 5)
        await asyncio.wait_for(ws.wait_closed(), 5)
    [call] = app.calls
    assert (call.info.call_id, call.info.agent, call.info.from_number) == (CALL, "front-desk", "+1")
    assert ws.close_code == 1000


@pytest.mark.parametrize("case", [
    pytest.param(lambda app: ({}, app.parameters()), id="unsigned"),
    # Signed for the main port's route, not for the URL Twilio connected to.
    pytest.param(lambda app: (app.signed("wss://127.0.0.1:8000/twilio/media"), app.parameters()),
                 id="signed-for-another-url"),
    pytest.param(lambda app: (app.signed(), {}), id="no-token"),
    pytest.param(lambda app: (app.signed(), app.parameters("CA-other")), id="other-call-token"),
])
async def test_a_bad_signature_or_token_closes_the_stream_1008_and_never_handles_it(case) -> None:
    app = Listening()
    async with listening(app):
        headers, parameters = case(app)
        ws = await open_stream(app, headers, parameters)
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1008
    assert app.calls == []


async def test_a_stream_token_opens_one_stream_only() -> None:
    app = Listening()
    parameters = app.parameters()
    codes = []
    async with listening(app):
        for _ in range(2):
            ws = await open_stream(app, app.signed(), parameters)
            await asyncio.wait_for(ws.wait_closed(), 5)
            codes.append(ws.close_code)
    assert codes == [1000, 1008]
    assert len(app.calls) == 1


async def test_without_an_auth_token_the_listener_closes_every_stream_1008() -> None:
    app = Listening(twilio_auth_token="")
    async with listening(app):
        ws = await open_stream(app, {}, app.parameters())
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1008 and app.calls == []


async def test_any_other_path_is_refused_403_on_the_upgrade() -> None:
    app = Listening()
    async with listening(app):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{app.listener.port}/twilio/other",
                          additional_headers=app.signed())
    assert refused.value.response.status_code == 403
    assert app.listener.refused == 1 and app.calls == []


async def test_a_host_this_server_does_not_answer_to_is_refused_400() -> None:
    app = Listening()
    async with listening(app):
        with pytest.raises(InvalidStatus) as refused:
            await open_stream(app, app.signed(), app.parameters(), host="evil.example")
    assert refused.value.response.status_code == 400
    assert app.calls == []


async def test_a_name_the_main_port_answers_to_is_taken_and_signed_for_as_twilio_was_told() -> None:
    app = Listening(host="192.0.2.5")  # HOST: the main port answers to it, so the TwiML names it
    async with listening(app):
        port = app.listener.port
        ws = await open_stream(app, app.signed(f"wss://192.0.2.5:{port}/twilio/media"),
                               app.parameters(), host="192.0.2.5")
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1000 and len(app.calls) == 1


async def test_malformed_frames_are_counted_and_skipped_and_the_call_goes_on() -> None:
    events: list[CarrierEvent] = []

    async def collect(call: TwilioCallAudio) -> None:
        async for event in call.events():
            events.append(event)

    app = Listening(handle=collect)
    first, second = bytes([1]) * 160, bytes([2]) * 160
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await ws.send("{this is not json")
        await ws.send(b"\x00\x01")
        await ws.send(twilio.encode(twilio.media(stream_sid=SID, sequence_number=2, chunk=1,
                                                 timestamp=0, payload=first)))
        await ws.send('{"event":"transmogrify","streamSid":"%s"}' % SID)
        await ws.send(twilio.encode(twilio.media(stream_sid=SID, sequence_number=3, chunk=2,
                                                 timestamp=20, payload=second)))
        await ws.send(twilio.encode(twilio.stop(stream_sid=SID, sequence_number=4,
                                                account_sid="AC1", call_sid=CALL)))
        await asyncio.wait_for(app.handled.wait(), 5)
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert [e.audio for e in events if isinstance(e, InboundAudio)] == [first, second]
    assert isinstance(events[-1], StreamStopped)
    [call] = app.calls
    assert dict(call.malformed_counts) == {"bad_json": 1, "binary": 1, "unknown_event": 1}


async def test_stopping_the_listener_closes_a_stream_still_open() -> None:
    release = asyncio.Event()

    async def hold(call: TwilioCallAudio) -> None:
        await release.wait()

    app = Listening(handle=hold)
    async with listening(app):
        ws = await open_stream(app, app.signed(), app.parameters())
        await asyncio.wait_for(_until(lambda: app.calls), 5)
    # The handler never let go: the listener ended it, and the caller saw the socket close.
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert not app.listener.sockets
    assert app.handled.is_set()


async def _until(condition: Callable[[], object]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


# ------------------------------------------------------------ the socket itself


class _Served:
    """A listener whose streams are handed to the test as ``MediaSocket``s."""

    def __init__(self) -> None:
        self.listener = MediaListener("127.0.0.1", 0)
        self.sockets: asyncio.Queue[MediaSocket] = asyncio.Queue()
        self.release = asyncio.Event()

    async def serve(self, ws: MediaSocket, url: str) -> None:
        await self.sockets.put(ws)
        await self.release.wait()


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[tuple[_Served, ClientConnection]]:
    s = _Served()
    await s.listener.start(s.serve)
    client = await connect(f"ws://127.0.0.1:{s.listener.port}/twilio/media?x=1")
    try:
        yield s, client
    finally:
        s.release.set()
        await client.close()
        await s.listener.stop(grace=1.0)


async def test_the_socket_reads_like_starlettes_websocket() -> None:
    async with served() as (s, client):
        ws = await asyncio.wait_for(s.sockets.get(), 5)
        assert ws.query_params == {"x": "1"} and ws.url.path == "/twilio/media"
        assert ws.headers.get("HOST") == f"127.0.0.1:{s.listener.port}"
        await client.send("hello")
        await client.send(b"\x01\x02")
        assert await ws.receive() == {"type": "websocket.receive", "text": "hello"}
        assert await ws.receive() == {"type": "websocket.receive", "bytes": b"\x01\x02"}
        await ws.send_text("back")
        assert await client.recv() == "back"
        await client.close(1000)
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message["type"] == "websocket.disconnect" and message["code"] == 1000
        with pytest.raises(WebSocketDisconnected):
            await ws.receive()
        with pytest.raises(WebSocketDisconnect):
            await ws.send_text("too late")  # the peer is gone: what Starlette raises


async def test_after_our_close_a_send_raises_and_the_peer_sees_the_code() -> None:
    async with served() as (s, client):
        ws = await asyncio.wait_for(s.sockets.get(), 5)
        await ws.close(1008, "no")
        with pytest.raises(WebSocketDisconnected):
            await ws.send_text("after close")
        await asyncio.wait_for(client.wait_closed(), 5)
        assert client.close_code == 1008 and client.close_reason == "no"


async def test_a_send_waits_while_the_transport_is_over_its_high_water_mark() -> None:
    async with served() as (s, client):
        ws = await asyncio.wait_for(s.sockets.get(), 5)
        ws.pause_writing()  # as the transport calls it when its buffer is full
        sending = asyncio.create_task(ws.send_text("later"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sending.done()
        ws.resume_writing()
        await asyncio.wait_for(sending, 5)
        assert await asyncio.wait_for(client.recv(), 5) == "later"


# ------------------------------------------------------------ a whole call, a real server


async def test_a_whole_call_runs_over_the_listener(tmp_path: Path) -> None:
    from agentplatform.testing.stack import local_server, simulated_settings

    write_agent(tmp_path / "agents")
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=800,
                                    caller_texts=["Do you have a slot on Monday?"]) as sim:
        config = simulated_settings(agents_dir=tmp_path / "agents", database_url=database_url,
                                    openai_url=sim.url, media_listen="127.0.0.1:0")
        async with local_server(config) as server:
            [carrier] = [c for c in server.app.state.carriers if c.name == "twilio"]
            listener = carrier.listener
            async with TwilioCaller(server.base_url, to=AGENT_NUMBER) as caller:
                assert caller.answer is not None
                assert caller.answer.stream_url == f"wss://127.0.0.1:{listener.port}/twilio/media"
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                greeting_ms = caller.played_ms
                await caller.say(SPEECH)
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                assert caller.played_ms > greeting_ms + 500
                assert not caller.protocol_errors
                assert len(listener.sockets) == 1  # the stream came through the listener
            await asyncio.sleep(0.3)
            engine = make_engine(database_url)
            try:
                detail = await closed_call_record(server, engine)
            finally:
                engine.dispose()
    assert detail.end_reason == "caller_hung_up"
    assert [t.role for t in detail.turns][:3] == ["assistant", "user", "assistant"]
    assert detail.turns[1].text == "Do you have a slot on Monday?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NUMBER = "+15555550300"
LONG_AGENT = f"""\
name: front-desk
prompt: You answer the phone.
greeting: Thanks for calling, this greeting goes on for a good while.
phone_numbers: ["{NUMBER}"]
"""
DRAIN_SECONDS = 3.0


async def test_sigterm_drains_live_calls_on_the_listener(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front-desk.yaml").write_text(LONG_AGENT)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    media_port = _free_port()
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=20_000) as sim:
        env = fleet_env(agents_dir=agents, database_url=database_url, openai_url=sim.url,
                        DRAIN_TIMEOUT_SECONDS=str(DRAIN_SECONDS),
                        MEDIA_LISTEN=f"127.0.0.1:{media_port}")
        async with servers(1, env, tmp_path) as (server,):
            leaves = TwilioCaller(server.base_url, to=NUMBER, from_="+15550000001")
            stays = TwilioCaller(server.base_url, to=NUMBER, from_="+15550000002")
            assert await leaves.dial() and await stays.dial()
            assert stays.answer is not None
            assert stays.answer.stream_url == f"wss://127.0.0.1:{media_port}/twilio/media"
            await asyncio.gather(leaves.wait_for_audio(10), stays.wait_for_audio(10))

            server.terminate()
            await asyncio.sleep(0.5)
            # One live call ends by itself during the drain; the process keeps serving.
            await leaves.hang_up()
            assert server.proc.poll() is None
            # The other outlives the drain: the server ends it, then exits.
            await stays.wait_closed(DRAIN_SECONDS + 10)
            code = await server.wait_exit(15)
            log = server.log()
        assert code in (0, -15), log

    engine = make_engine(database_url)
    try:
        calls = {c.carrier_call_id: c for c in queries.list_calls(engine)}
    finally:
        engine.dispose()
    assert set(calls) == {leaves.call_sid, stays.call_sid}, log
    assert calls[leaves.call_sid].end_reason == "caller_hung_up"
    assert calls[stays.call_sid].end_reason == "server_shutdown"
    assert calls[stays.call_sid].duration_seconds >= DRAIN_SECONDS


async def test_workers_share_the_listener_socket(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front-desk.yaml").write_text(LONG_AGENT)
    port, media_port = _free_port(), _free_port()
    env = {**os.environ, **fleet_env(agents_dir=agents,
                                     database_url=f"sqlite:///{tmp_path / 'calls.db'}",
                                     openai_url="ws://127.0.0.1:9/none"),
           "LOG_LEVEL": "warning", "SIP_LISTEN": "", "OVERLOAD_SHEDDING": "false",
           "MEDIA_LISTEN": f"127.0.0.1:{media_port}"}
    env.pop(MEDIA_FD_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "agentplatform.cli", "serve", "--port",
                             str(port), "--workers", "2"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        pattern = ["pgrep", "-f", "--", f"--port {port} --worker-fd"]
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200 \
                        and len(subprocess.run(pattern, capture_output=True, text=True,
                                               check=False).stdout.split()) == 2:
                    break
            assert time.monotonic() < deadline, "the workers never answered"
            await asyncio.sleep(0.2)
        workers = subprocess.run(pattern, capture_output=True, text=True, check=False).stdout.split()
        # Both workers listen on the one socket the supervisor bound (no port per worker).
        for pid in workers:
            env_of = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"{MEDIA_FD_ENV}=".encode() in b"\0".join(env_of)
        # Streams reach a worker there and are refused as unsigned, as they should be.
        for _ in range(4):
            ws = await connect(f"ws://127.0.0.1:{media_port}/twilio/media")
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_worker_socket_variable_is_one_name() -> None:
    assert media_listener.MEDIA_FD_ENV == MEDIA_FD_ENV == "AGENTPLATFORM_MEDIA_FD"


async def test_placed_calls_are_sent_to_the_listener(tmp_path: Path) -> None:
    from agentplatform.carriers.dialing import OutboundRequest
    from agentplatform.carriers.twilio.outbound import TwilioDialer
    from agentplatform.carriers.twilio.outbound import LiveStreams

    config = settings(public_url="https://calls.example.com", twilio_account_sid="AC1",
                      media_listen="127.0.0.1:8765")
    listener = MediaListener.from_settings(config)
    assert listener is not None
    dialer = TwilioDialer(config, StreamTokens.from_settings(config), None,  # type: ignore[arg-type]
                          LiveStreams(), media_url=lambda: listener.stream_url(""))
    request = OutboundRequest(call_id="call-1", agent="front-desk", to_number="+15550100",
                              from_number="+15550199", carrier="twilio")
    twiml = str(dialer.create_parameters(request)["twiml"])
    assert 'url="wss://calls.example.com:8765/twilio/media"' in twiml


async def test_a_listener_that_stops_accepting_leaves_new_streams_to_a_sibling_and_keeps_its_own() -> None:
    from agentplatform.serving import bind

    shared = bind("127.0.0.1", 0)  # one socket, two listeners on it: two workers' view
    port = shared.getsockname()[1]
    got: dict[str, list[MediaSocket]] = {"a": [], "b": []}

    def serve_as(name: str):  # noqa: ANN202
        async def serve(ws: MediaSocket, url: str) -> None:
            got[name].append(ws)
            async for text in _texts(ws):
                await ws.send_text(text)
        return serve

    a = MediaListener("127.0.0.1", 0, inherited_fd=os.dup(shared.fileno()))
    b = MediaListener("127.0.0.1", 0, inherited_fd=os.dup(shared.fileno()))
    await a.start(serve_as("a"))
    await b.start(serve_as("b"))
    url = f"ws://127.0.0.1:{port}/twilio/media"
    clients = []
    try:
        await b.set_accepting(False)
        first = await connect(url)  # only a accepts
        clients.append(first)
        await asyncio.wait_for(_until(lambda: got["a"]), 5)
        await a.set_accepting(False)
        await b.set_accepting(True)
        assert not a.accepting and b.accepting
        for _ in range(4):
            clients.append(await connect(url))
        await asyncio.wait_for(_until(lambda: len(got["b"]) == 4), 5)
        assert len(got["a"]) == 1
        # The stream a took before it stopped accepting goes on.
        await first.send("still here")
        assert await asyncio.wait_for(first.recv(), 5) == "still here"
    finally:
        for client in clients:
            await client.close()
        await a.stop(grace=1.0)
        await b.stop(grace=1.0)
        shared.close()


async def _texts(ws: MediaSocket) -> AsyncIterator[str]:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            yield await ws.receive_text()


def _twilio_carrier(**overrides: object):  # noqa: ANN202
    from agentplatform.carriers.plugin import CarrierContext
    from agentplatform.carriers.twilio.plugin import TwilioCarrier

    context = CarrierContext("twilio", settings(**overrides), MemorySingleUse(),
                             services=lambda: None)  # type: ignore[arg-type,return-value]
    return TwilioCarrier(context)


async def test_a_full_worker_stops_taking_streams_on_the_listener_and_takes_them_again() -> None:
    from agentplatform.app import _steer_streams

    class Headroom:
        steerable = False

        def __init__(self) -> None:
            self.watchers: list[Callable[[bool], None]] = []

        def watch(self, callback: Callable[[bool], None]) -> None:
            self.watchers.append(callback)

    carrier = _twilio_carrier()
    assert carrier.steers_streams and not _twilio_carrier(media_listen="").steers_streams
    await carrier.start()
    try:
        headroom = Headroom()
        _steer_streams(headroom, [_twilio_carrier(media_listen=""), carrier])  # type: ignore[arg-type]
        assert headroom.steerable
        [changed] = headroom.watchers
        changed(False)
        await asyncio.wait_for(_until(lambda: not carrier.listener.accepting), 5)
        changed(True)
        await asyncio.wait_for(_until(lambda: carrier.listener.accepting), 5)
    finally:
        await carrier.stop()


def test_without_a_listener_streams_are_not_steered() -> None:
    from agentplatform.app import _steer_streams

    class Headroom:
        steerable = False

        def watch(self, callback: Callable[[bool], None]) -> None:
            raise AssertionError("nothing to steer")

    headroom = Headroom()
    _steer_streams(headroom, [_twilio_carrier(media_listen="")])  # type: ignore[arg-type]
    assert not headroom.steerable
