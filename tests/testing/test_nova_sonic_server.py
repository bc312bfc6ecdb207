"""The Nova Sonic simulator, driven by a raw client (no adapter) so its checks are
seen directly: signatures, event order, the output sequence, fault injection."""

import asyncio
import struct
import uuid
from urllib.parse import quote

import pytest

from agentplatform.realtime import nova_events as ev
from agentplatform.realtime.aws_eventstream import EventSigner, MessageDecoder, sign_request
from agentplatform.realtime.aws_http2 import Http2Connection, Http2Stream
from agentplatform.testing.nova_sonic_server import NovaSonicServer, ScriptedTurn

GUARD = 10
MODEL = "amazon.nova-2-sonic-v1:0"


class RawClient:
    """Just enough client to speak to the simulator by hand."""

    def __init__(self, conn: Http2Connection, stream: Http2Stream, signer: EventSigner) -> None:
        self.conn, self.stream, self.signer = conn, stream, signer
        self.prompt, self.audio = str(uuid.uuid4()), str(uuid.uuid4())
        self.decoder = MessageDecoder()

    @classmethod
    async def open(cls, server: NovaSonicServer, *, secret: str | None = None,
                   path: str | None = None) -> "RawClient":
        path = path or f"/model/{quote(MODEL, safe='')}/invoke-with-bidirectional-stream"
        headers, seed = sign_request(server.url + path, access_key=server.access_key,
                                     secret_key=secret or server.secret_key,
                                     session_token=None, region=server.region,
                                     service="bedrock")
        conn = await Http2Connection.open("127.0.0.1", server.port,
                                          ssl_context=server.tls.client)
        stream = await conn.request("POST", path, f"127.0.0.1:{server.port}", headers)
        return cls(conn, stream, EventSigner(server.secret_key, server.region, "bedrock", seed))

    async def send(self, *events) -> None:
        for event in events:
            await self.stream.send(self.signer.sign(ev.chunk_message(event)))

    async def start(self, history=()) -> None:
        await self.send(ev.session_start(), ev.prompt_start(self.prompt, voice="matthew", tools=[]),
                        *ev.text_block(self.prompt, "sys", "SYSTEM", "Be brief."))
        for i, (role, text) in enumerate(history):
            await self.send(*ev.text_block(self.prompt, f"h{i}", role, text))
        await self.send(ev.audio_content_start(self.prompt, self.audio))

    async def utter(self) -> None:
        loud = struct.pack("<640h", *([6000, -6000] * 320))
        for _ in range(8):
            await self.send(ev.audio_input(self.prompt, self.audio, loud))
        for _ in range(10):
            await self.send(ev.audio_input(self.prompt, self.audio, bytes(1280)))

    async def finish(self) -> None:
        await self.send(ev.content_end(self.prompt, self.audio), ev.prompt_end(self.prompt),
                        ev.session_end())
        await self.stream.send(self.signer.sign(b""), end=True)

    async def read_until(self, stop) -> list:
        """Nova events and exceptions until ``stop(item)`` is true or the stream ends."""
        items = []
        async with asyncio.timeout(GUARD):
            while data := await self.stream.receive():
                for message in self.decoder.feed(data):
                    item = ev.read_message(message)
                    items.append(item)
                    if stop(item):
                        return items
        return items


def is_exception(item) -> bool:
    return isinstance(item, ev.ServiceException)


def is_completion_end(item) -> bool:
    return isinstance(item, dict) and "completionEnd" in item["event"]


@pytest.fixture
async def server():
    async with NovaSonicServer(script=[ScriptedTurn("Hi!", user="hello")]) as srv:
        yield srv


async def test_a_turn_follows_the_nova_output_sequence(server):
    client = await RawClient.open(server)
    assert (await client.stream.response())[0] == 200
    await client.start()
    await client.utter()
    items = await client.read_until(is_completion_end)
    parsed = [ev.parse_output(i) for i in items]
    shape = [(type(p).__name__, getattr(p, "kind", ""), getattr(p, "role", ""),
              getattr(p, "stage", getattr(p, "stop_reason", ""))) for p in parsed
             if not isinstance(p, ev.AudioOutput)]
    assert shape == [
        ("CompletionStart", "", "", ""),
        ("ContentStart", "TEXT", "USER", "FINAL"), ("TextOutput", "", "USER", ""),
        ("ContentEnd", "TEXT", "", "END_TURN"),
        ("ContentStart", "TEXT", "ASSISTANT", "SPECULATIVE"), ("TextOutput", "", "ASSISTANT", ""),
        ("ContentEnd", "TEXT", "", "PARTIAL_TURN"),
        ("ContentStart", "AUDIO", "ASSISTANT", ""),
        ("ContentEnd", "AUDIO", "", "END_TURN"),
        ("ContentStart", "TEXT", "ASSISTANT", "FINAL"), ("TextOutput", "", "ASSISTANT", ""),
        ("ContentEnd", "TEXT", "", "END_TURN"),
        ("UsageDelta", "", "", ""), ("CompletionEnd", "", "", "END_TURN"),
    ]
    audio = b"".join(p.audio for p in parsed if isinstance(p, ev.AudioOutput))
    # "Hi!" at 40 ms per character: 120 ms of 24 kHz PCM16 (48 bytes per ms).
    assert len(audio) == 3 * server.reply_ms_per_char * 48
    await client.finish()
    assert await client.read_until(lambda i: False) == []
    record = server.sessions[0]
    assert record.ended_cleanly
    assert "audioInput" not in record.names()
    assert record.audio_in_bytes == 18 * 1280
    await client.conn.close()


async def test_silence_alone_is_never_answered(server):
    client = await RawClient.open(server)
    await client.start()
    for _ in range(25):
        await client.send(ev.audio_input(client.prompt, client.audio, bytes(1280)))
    await client.finish()
    assert await client.read_until(lambda i: False) == []
    assert server.sessions[0].turns_answered == 0
    await client.conn.close()


async def test_audio_inside_an_open_text_block_is_a_validation_error(server):
    client = await RawClient.open(server)
    await client.send(ev.session_start(), ev.prompt_start(client.prompt, voice="matthew", tools=[]),
                      *ev.text_block(client.prompt, "sys", "SYSTEM", "Be brief."),
                      ev.text_content_start(client.prompt, "h1", "USER"),
                      ev.audio_content_start(client.prompt, client.audio),
                      ev.audio_input(client.prompt, client.audio, bytes(640)))
    items = await client.read_until(is_exception)
    assert items[-1] == ev.ServiceException(
        "validationException", "Chat history should be sent completely before streaming audio")
    assert await client.read_until(lambda i: False) == []  # and the stream ends
    await client.conn.close()


async def test_history_must_start_with_user_and_alternate(server):
    client = await RawClient.open(server)
    await client.start(history=[("ASSISTANT", "Hello")])
    items = await client.read_until(is_exception)
    assert items[-1].kind == "validationException"
    assert "alternate" in items[-1].message
    await client.conn.close()


async def test_events_out_of_order_are_refused(server):
    client = await RawClient.open(server)
    await client.send(ev.prompt_start(client.prompt, voice="matthew", tools=[]))
    items = await client.read_until(is_exception)
    assert items[-1].kind == "validationException"
    assert "promptStart" in items[-1].message
    await client.conn.close()


async def test_a_broken_signature_chain_is_an_exception_event(server):
    client = await RawClient.open(server)
    await client.send(ev.session_start())
    forged = EventSigner("guessed-secret", server.region, "bedrock", "00" * 32)
    await client.stream.send(forged.sign(ev.chunk_message(
        ev.prompt_start(client.prompt, voice="matthew", tools=[]))))
    items = await client.read_until(is_exception)
    assert items[-1].kind == "validationException"
    assert "signature" in items[-1].message
    assert server.sessions[0].names() == ["sessionStart"]
    await client.conn.close()


async def test_tool_result_for_an_unknown_tool_use_is_refused(server):
    client = await RawClient.open(server)
    await client.start()
    await client.send(*ev.tool_result_block(client.prompt, "t", "no-such-id", "{}"))
    items = await client.read_until(is_exception)
    assert "no-such-id" in items[-1].message
    await client.conn.close()


async def test_wrong_secret_gets_403_with_the_error_type_header(server):
    client = await RawClient.open(server, secret="wrong")
    status, headers = await client.stream.response()
    assert status == 403
    assert headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    body = await client.stream.receive()
    assert b"signature" in body
    assert server.sessions == []
    await client.conn.close()


async def test_refuse_key_refuses_even_a_correct_signature():
    async with NovaSonicServer(refuse_key=True) as server:
        client = await RawClient.open(server)
        status, headers = await client.stream.response()
        assert status == 403
        assert headers["x-amzn-errortype"].startswith("UnrecognizedClientException")
        await client.conn.close()


async def test_unknown_route_is_404(server):
    client = await RawClient.open(server, path="/model/x/invoke")
    assert (await client.stream.response())[0] == 404
    await client.conn.close()


async def test_max_connection_seconds_sends_model_timeout_and_ends_the_stream():
    async with NovaSonicServer(max_connection_seconds=0.05) as server:
        client = await RawClient.open(server)
        await client.start()
        items = await client.read_until(is_exception)
        assert items[-1].kind == "modelTimeoutException"
        assert await client.read_until(lambda i: False) == []
        await client.conn.close()


async def test_script_advances_across_streams():
    script = [ScriptedTurn("first", user="u1"), ScriptedTurn("second", user="u2")]
    async with NovaSonicServer(script=script) as server:
        said = []
        for _ in range(2):
            client = await RawClient.open(server)
            await client.start()
            await client.utter()
            items = await client.read_until(is_completion_end)
            said += [i["event"]["textOutput"]["content"] for i in items
                     if isinstance(i, dict) and "textOutput" in i["event"]
                     and i["event"]["textOutput"]["role"] == "USER"]
            await client.conn.close()
        assert said == ["u1", "u2"]


async def test_many_concurrent_sessions_are_each_answered():
    async with NovaSonicServer() as server:
        async def one_call() -> int:
            client = await RawClient.open(server)
            await client.start()
            await client.utter()
            items = await client.read_until(is_completion_end)
            await client.finish()
            await client.conn.close()
            return sum(1 for i in items if is_completion_end(i))

        results = await asyncio.gather(*(one_call() for _ in range(20)))
        assert results == [1] * 20
        assert len(server.sessions) == 20
        assert all(s.turns_answered == 1 and not s.errors for s in server.sessions)
