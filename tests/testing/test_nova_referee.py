"""AWS's own Bedrock SDK as the referee of our Nova Sonic wire format.

The adapter and the simulator were written by the same hands; a misreading they share
passes every other test. Here AWS's SDK (``aws-sdk-bedrock-runtime``, test-only) takes
one side each time: it drives the simulator as a real client would (its request
signing, event framing, event signing and typed output decoding), and it decodes and
re-signs the bytes our adapter sends. The inner Nova events are JSON the SDK carries as
opaque bytes; their shapes are checked against AWS's published samples elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid
from binascii import hexlify
from io import BytesIO
from typing import Any

import pytest
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime._private.schemas import (
    INVOKE_MODEL_WITH_BIDIRECTIONAL_STREAM_OUTPUT,
)
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
    InvokeModelWithBidirectionalStreamOutputChunk,
    ModelTimeoutException,
    ValidationException,
    _InvokeModelWithBidirectionalStreamInputDeserializer,
)
from aws_sdk_signers import URI, AsyncEventSigner, AsyncSigV4Signer, AWSRequest, Field, Fields
from awscrt import io as crt_io
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream._private.deserializers import EventDeserializer
from smithy_aws_event_stream._private.serializers import EventSerializer
from smithy_aws_event_stream.events import Event, EventHeaderDecoder, EventHeaderEncoder
from smithy_http.aio.crt import AWSCRTHTTPClient
from smithy_json import JSONCodec

from agentplatform.realtime import nova_events as ev
from agentplatform.realtime import nova_sonic
from agentplatform.realtime.base import ResponseDone, SessionSetup
from agentplatform.realtime.nova_sonic import NovaSonicSession
from agentplatform.testing import nova_sonic_wire
from agentplatform.testing.nova_sonic_server import NovaSonicServer, ScriptedTurn

GUARD = 15  # seconds; a hang fails the test instead of stalling the suite
MODEL = "amazon.nova-2-sonic-v1:0"


# ---------------------------------------------------------------- the SDK as a client


class _TrustingCrtClient(AWSCRTHTTPClient):
    """The SDK's own HTTP/2 transport, trusting only the simulator's certificate.

    The CRT client takes no TLS options yet, so its context is replaced whole: the
    default trust store is swapped for the one test certificate, nothing loosened."""

    def __init__(self, ca_pem: bytes) -> None:
        super().__init__()
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store(ca_pem)
        self._tls_ctx = crt_io.ClientTlsContext(options)


async def sdk_client(server: NovaSonicServer, tmp_path: Any) -> AsyncBedrockRuntimeClient:
    """An SDK client pointed at the simulator with static credentials (no profile
    files, no environment: ``tmp_path`` names files that do not exist)."""
    config = await AsyncBedrockRuntimeConfig.resolve(
        config_file_path=str(tmp_path / "no-config"),
        credentials_file_path=str(tmp_path / "no-credentials"),
        endpoint_uri=server.url, region=server.region,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        transport=_TrustingCrtClient(server.tls.cert_pem),
    )
    return AsyncBedrockRuntimeClient(config=config)


def chunk(name: str, body: dict[str, Any]) -> InvokeModelWithBidirectionalStreamInputChunk:
    """One Nova input event as the SDK's typed input chunk (AWS samples build it so)."""
    event = json.dumps({"event": {name: body}}).encode()
    return InvokeModelWithBidirectionalStreamInputChunk(
        value=BidirectionalInputPayloadPart(bytes_=event))


def loud_pcm(ms: int) -> bytes:
    n = 16 * ms
    return struct.pack(f"<{n}h", *([6000, -6000] * (n // 2)))


class SdkConversation:
    """The input sequence of AWS's Nova Sonic samples, sent through the SDK."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.prompt, self.audio = str(uuid.uuid4()), str(uuid.uuid4())

    async def send(self, name: str, body: dict[str, Any]) -> None:
        await self.stream.input_stream.send(chunk(name, body))

    async def start(self, system: str = "You are a friendly assistant.") -> None:
        await self.send("sessionStart", {"inferenceConfiguration": {
            "maxTokens": 1024, "topP": 0.9, "temperature": 0.7}})
        await self.send("promptStart", {
            "promptName": self.prompt,
            "textOutputConfiguration": {"mediaType": "text/plain"},
            "audioOutputConfiguration": {
                "mediaType": "audio/lpcm", "sampleRateHertz": 24000, "sampleSizeBits": 16,
                "channelCount": 1, "voiceId": "matthew", "encoding": "base64",
                "audioType": "SPEECH"}})
        sys_name = str(uuid.uuid4())
        await self.send("contentStart", {
            "promptName": self.prompt, "contentName": sys_name, "type": "TEXT",
            "interactive": True, "role": "SYSTEM",
            "textInputConfiguration": {"mediaType": "text/plain"}})
        await self.send("textInput", {"promptName": self.prompt, "contentName": sys_name,
                                      "content": system})
        await self.send("contentEnd", {"promptName": self.prompt, "contentName": sys_name})
        await self.send("contentStart", {
            "promptName": self.prompt, "contentName": self.audio, "type": "AUDIO",
            "interactive": True, "role": "USER",
            "audioInputConfiguration": {
                "mediaType": "audio/lpcm", "sampleRateHertz": 16000, "sampleSizeBits": 16,
                "channelCount": 1, "audioType": "SPEECH", "encoding": "base64"}})

    async def utter(self) -> None:
        """320 ms of loud audio then 400 ms of silence, in 40 ms chunks."""
        for pcm in [loud_pcm(40)] * 8 + [bytes(1280)] * 10:
            await self.send("audioInput", {"promptName": self.prompt, "contentName": self.audio,
                                           "content": base64.b64encode(pcm).decode()})

    async def finish(self) -> None:
        await self.send("contentEnd", {"promptName": self.prompt, "contentName": self.audio})
        await self.send("promptEnd", {"promptName": self.prompt})
        await self.send("sessionEnd", {})
        await self.stream.input_stream.close()


async def receive_until(receiver: Any, stop: str) -> list[dict[str, Any]]:
    """Decoded Nova events up to and including the first named ``stop``; every output
    must be the SDK's typed chunk."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(GUARD):
        while (item := await receiver.receive()) is not None:
            assert isinstance(item, InvokeModelWithBidirectionalStreamOutputChunk), item
            event = json.loads(item.value.bytes_)
            events.append(event)
            if stop in event["event"]:
                return events
    raise AssertionError(f"stream ended before {stop}: {[next(iter(e['event'])) for e in events]}")


@pytest.fixture
async def server():
    async with NovaSonicServer(script=[ScriptedTurn("Hello from the simulator.",
                                                    user="hi there")]) as srv:
        yield srv


@pytest.fixture
async def conversation(server, tmp_path):
    client = await sdk_client(server, tmp_path)
    stream = await client.invoke_model_with_bidirectional_stream(
        InvokeModelWithBidirectionalStreamOperationInput(model_id=MODEL))
    yield SdkConversation(stream)
    await stream.close()
    await client.close()


# ---------------------------------------------------------------- the SDK drives the simulator


async def test_sdk_client_holds_a_spoken_exchange_with_the_simulator(server, conversation):
    await conversation.start()
    await conversation.utter()
    _, receiver = await asyncio.wait_for(conversation.stream.await_output(), GUARD)
    events = await receive_until(receiver, "completionEnd")
    names = [next(iter(e["event"])) for e in events]
    assert names[0] == "completionStart"
    assert {"contentStart", "textOutput", "audioOutput", "contentEnd", "usageEvent"} <= set(names)
    texts = [(e["event"]["textOutput"]["role"], e["event"]["textOutput"]["content"])
             for e in events if "textOutput" in e["event"]]
    assert ("USER", "hi there") in texts
    assert ("ASSISTANT", "Hello from the simulator.") in texts
    await conversation.finish()
    (record,) = server.sessions
    assert record.headers[":path"].endswith("/invoke-with-bidirectional-stream?")
    assert record.model_id == MODEL
    assert record.errors == []


async def test_sdk_reads_the_simulators_timeout_as_its_modelTimeoutException(server,
                                                                           conversation):
    await conversation.start()
    _, receiver = await asyncio.wait_for(conversation.stream.await_output(), GUARD)
    server.expire()
    with pytest.raises(ModelTimeoutException):
        async with asyncio.timeout(GUARD):
            while await receiver.receive() is not None:
                pass


async def test_sdk_reads_the_simulators_refusal_as_its_validationException(server,
                                                                        conversation):
    await conversation.send("sessionStart", {"inferenceConfiguration": {"maxTokens": 10}})
    await conversation.send("textInput", {"promptName": "nobody", "contentName": "x",
                                          "content": "out of order"})
    _, receiver = await asyncio.wait_for(conversation.stream.await_output(), GUARD)
    with pytest.raises(ValidationException):
        async with asyncio.timeout(GUARD):
            while await receiver.receive() is not None:
                pass


# ---------------------------------------------------------------- exception names


def test_exception_names_are_the_members_of_aws_output_union():
    aws = set(INVOKE_MODEL_WITH_BIDIRECTIONAL_STREAM_OUTPUT.members) - {"chunk"}
    assert ev.STREAM_EXCEPTIONS == aws  # the adapter's reading
    assert nova_sonic_wire.STREAM_EXCEPTIONS == aws  # the simulator's, written separately
    assert nova_sonic._RECYCLABLE <= aws


# ---------------------------------------------------------------- the SDK reads the adapter


def _setup(server: NovaSonicServer) -> SessionSetup:
    return SessionSetup(model=MODEL, instructions="You are a helpful agent.", voice="tiffany",
                        url=server.url, api_key=server.access_key, auth="sigv4",
                        extra=server.client_extra())


async def _adapter_call(server: NovaSonicServer) -> None:
    """One short call through the adapter: a spoken turn, a text turn, a clean close."""
    session = NovaSonicSession(_setup(server))
    await session.connect()
    for pcm in [loud_pcm(40)] * 8 + [bytes(1280)] * 10:
        await session.send_audio(pcm)
    async with asyncio.timeout(GUARD):
        async for event in session.events():
            if isinstance(event, ResponseDone):
                break
    await session.send_text("Please spell that.", respond=False)
    await session.close()


@pytest.fixture
async def recorded():
    """The adapter's request as the simulator received it, body kept whole."""
    async with NovaSonicServer(script=[ScriptedTurn("Hello.", user="hi")],
                               keep_raw=True) as server:
        await _adapter_call(server)
        (record,) = server.sessions
        yield server, record


def _identity(server: NovaSonicServer) -> AWSCredentialsIdentity:
    return AWSCredentialsIdentity(access_key_id=server.access_key,
                                  secret_access_key=server.secret_key)


async def test_adapter_request_signature_is_the_one_aws_signer_computes(recorded):
    server, record = recorded
    headers = record.headers
    sent = {k: v for k, v in headers.items() if not k.startswith(":") and k != "authorization"}
    request = AWSRequest(
        destination=URI(host="127.0.0.1", port=server.port, path=headers[":path"]),
        method="POST", body=None,
        fields=Fields([Field(name=k, values=[v]) for k, v in sent.items()]))
    signed = await AsyncSigV4Signer().sign(
        request=request, identity=_identity(server),
        properties={"region": server.region, "service": "bedrock",
                    "date": headers["x-amz-date"]})
    assert signed.fields["Authorization"].as_string() == headers["authorization"]
    assert headers["x-amz-content-sha256"] == "STREAMING-AWS4-HMAC-SHA256-EVENTS"


def _envelopes(raw: bytes) -> list[tuple[bytes, Event]]:
    """Each signed envelope's bytes and the SDK's decoding of them."""
    found, pos = [], 0
    while pos < len(raw):
        total = int.from_bytes(raw[pos:pos + 4], "big")
        chunk = raw[pos:pos + total]
        event = Event.decode(BytesIO(chunk))
        assert event is not None
        found.append((chunk, event))
        pos += total
    return found


async def test_adapter_event_chain_verifies_under_aws_event_signer(recorded):
    """Every envelope's ``:chunk-signature`` is what AWS's event signer computes from the
    ``:date`` header as sent, the payload and the previous signature."""
    server, record = recorded
    seed = record.headers["authorization"].rsplit("Signature=", 1)[1]
    signer = AsyncEventSigner(initial_signature=seed.encode(),
                              event_encoder_cls=EventHeaderEncoder)
    prior = seed.encode()
    envelopes = _envelopes(bytes(record.raw))
    for chunk, envelope in envelopes:
        headers = envelope.message.headers
        assert list(headers) == [":date", ":chunk-signature"]
        date_header = chunk[12:12 + envelope.prelude.headers_length][:15]
        assert list(EventHeaderDecoder(date_header).decode_headers()) == [":date"]
        stamp = headers[":date"].strftime("%Y%m%dT%H%M%SZ")
        properties = {"region": server.region, "service": "bedrock", "date": stamp}
        to_sign = await signer._event_string_to_sign(
            timestamp=stamp, scope=signer._scope(properties), encoded_headers=date_header,
            payload=envelope.message.payload, prior_signature=prior)
        expected = await signer._sign_event(timestamp=stamp, string_to_sign=to_sign,
                                            identity=_identity(server), properties=properties)
        assert headers[":chunk-signature"] == expected
        prior = hexlify(expected)
    assert envelopes[-1][1].message.payload == b""  # the signed empty end frame
    assert len(envelopes) > 20


async def test_adapter_events_are_chunks_the_sdk_deserializes_and_reserializes(recorded):
    _, record = recorded
    names = []
    for _, envelope in _envelopes(bytes(record.raw))[:-1]:
        inner = Event.decode(BytesIO(envelope.message.payload))
        assert inner is not None
        value = _InvokeModelWithBidirectionalStreamInputDeserializer().deserialize(
            EventDeserializer(inner, JSONCodec(), is_client_mode=False))
        assert isinstance(value, InvokeModelWithBidirectionalStreamInputChunk)
        serializer = EventSerializer(payload_codec=JSONCodec())
        value.serialize(serializer)
        again = serializer.get_result()
        assert again is not None and again.headers == inner.message.headers
        assert json.loads(again.payload) == json.loads(inner.message.payload)
        event = json.loads(value.value.bytes_)
        names.append(next(iter(event["event"])))
    assert names[:5] == ["sessionStart", "promptStart", "contentStart", "textInput",
                         "contentEnd"]
    assert names[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert "audioInput" in names
