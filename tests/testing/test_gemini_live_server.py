"""The Gemini Live simulator speaks the protocol real clients expect: the google-genai
SDK talks to it unchanged, and every message it sends validates as a
``LiveServerMessage``."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
import pytest
from google import genai
from google.genai import types
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentplatform.testing.gemini_live_server import (
    BAD_KEY,
    NON_AUDIO,
    PATH,
    GeminiLiveServer,
    ScriptedTurn,
)
from agentplatform.testing.tls import TlsPair, make_tls_pair

KEY = "sim-key"
WAIT = 10.0  # a safety net for a hung test, never a performance bound
MODEL = "models/gemini-2.5-flash-native-audio-preview-12-2025"


def setup_message(**generation: Any) -> dict[str, Any]:
    return {
        "setup": {
            "model": MODEL,
            "generationConfig": {"responseModalities": ["AUDIO"], **generation},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 100}},
            "sessionResumption": {},
        }
    }


def audio_message(pcm: bytes) -> str:
    data = base64.b64encode(pcm).decode()
    return json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": data}}})


def tone(ms: int) -> bytes:
    t = np.arange(16 * ms) / 16000
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(32 * ms)


def validate_server_message(message: dict[str, Any]) -> types.LiveServerMessage:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return types.LiveServerMessage.model_validate(message)


class Client:
    """A bare protocol client that validates every server message it reads."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def until(self, predicate: Any) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
            validate_server_message(message)
            got.append(message)
            self.seen.append(message)
            if predicate(message):
                return got

    async def speak(self, ms: int = 200) -> None:
        await self.send(audio_message(tone(ms)))
        await self.send(audio_message(silence(200)))


def has(path: str) -> Any:
    keys = path.split(".")

    def check(message: dict[str, Any]) -> bool:
        value: Any = message
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return False
            value = value[key]
        return value is not None and value is not False  # {} (setupComplete) counts

    return check


@pytest.fixture
def tls() -> TlsPair:
    return make_tls_pair()


@pytest.fixture
async def server(tls: TlsPair) -> AsyncGenerator[GeminiLiveServer]:
    async with GeminiLiveServer(api_key=KEY, ssl_context=tls.server, speed=20) as srv:
        yield srv


async def open_client(server: GeminiLiveServer, tls: TlsPair, key: str = KEY) -> Client:
    ws = await connect(server.url, ssl=tls.client, additional_headers={"x-goog-api-key": key})
    return Client(ws)


async def ready_client(server: GeminiLiveServer, tls: TlsPair, **generation: Any) -> Client:
    client = await open_client(server, tls)
    await client.send(setup_message(**generation))
    await client.until(has("sessionResumptionUpdate"))
    return client


async def test_the_google_genai_sdk_holds_a_conversation_with_the_simulator(
    server: GeminiLiveServer, tls: TlsPair
) -> None:
    server.script.append(ScriptedTurn(says="Good morning.", heard="morning", audio_seconds=0.2))
    client = genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(
            base_url=f"https://127.0.0.1:{server.port}", async_client_args={"ssl": tls.client}
        ),
    )
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck")
            )
        ),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )
    async with client.aio.live.connect(model=MODEL.removeprefix("models/"), config=config) as live:
        await live.send_realtime_input(audio=types.Blob(data=tone(200), mime_type="audio/pcm;rate=16000"))
        await live.send_realtime_input(audio=types.Blob(data=silence(600), mime_type="audio/pcm;rate=16000"))
        audio = b""
        heard, said = "", ""
        async for message in live.receive():
            content = message.server_content
            if content is None:
                continue
            if content.input_transcription and content.input_transcription.text:
                heard += content.input_transcription.text
            if content.output_transcription and content.output_transcription.text:
                said += content.output_transcription.text
            if message.data:
                audio += message.data
            if content.turn_complete:
                break
    assert (heard, said) == ("morning", "Good morning.")
    assert len(audio) == int(0.2 * 24000) * 2
    assert server.connections[0].setup is not None
    assert server.connections[0].setup["model"] == MODEL


async def test_every_message_of_a_full_session_is_a_valid_server_message(
    server: GeminiLiveServer, tls: TlsPair
) -> None:
    server.script += [
        ScriptedTurn(says="One moment.", tool="lookup", tool_args={"q": "x"}),
        ScriptedTurn(says="Done."),
    ]
    client = await ready_client(server, tls)
    assert client.seen[0] == {"setupComplete": {}}
    await client.speak()
    calls = await client.until(has("toolCall"))
    call = calls[-1]["toolCall"]["functionCalls"][0]
    assert call["name"] == "lookup" and call["args"] == {"q": "x"}
    await client.send({"toolResponse": {"functionResponses": [
        {"id": call["id"], "name": "lookup", "response": {"output": "ok"}}
    ]}})
    turn = await client.until(has("sessionResumptionUpdate"))
    assert any(has("serverContent.modelTurn")(m) for m in turn)
    assert any(has("serverContent.generationComplete")(m) for m in turn)
    done = next(m for m in turn if has("serverContent.turnComplete")(m))
    usage = validate_server_message(done).usage_metadata
    assert usage is not None and usage.response_token_count and usage.prompt_token_count
    await client.send({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "thanks"}]}], "turnComplete": True}})
    await client.until(has("serverContent.turnComplete"))
    await server.go_away(time_left="5s", close_after=0)
    away = await client.until(has("goAway"))
    assert away[-1]["goAway"] == {"timeLeft": "5s"}
    await client.ws.wait_closed()


async def test_silence_alone_is_not_a_turn(server: GeminiLiveServer, tls: TlsPair) -> None:
    client = await ready_client(server, tls)
    await client.send(audio_message(silence(1000)))
    await client.speak()
    first = await client.until(lambda m: True)
    assert first == [{"serverContent": {"inputTranscription": {"text": "hello"}}}]


async def test_speech_over_an_answer_interrupts_it_and_stops_the_audio(
    server: GeminiLiveServer, tls: TlsPair
) -> None:
    server.script += [ScriptedTurn(says="a very long answer", audio_seconds=120), ScriptedTurn(heard="stop")]
    client = await ready_client(server, tls)
    await client.speak()
    await client.until(has("serverContent.modelTurn"))
    await client.send(audio_message(tone(40)))
    await client.until(has("serverContent.interrupted"))
    await client.send(audio_message(silence(200)))
    between = await client.until(has("serverContent.inputTranscription"))
    assert not any(has("serverContent.modelTurn")(m) for m in between)
    assert between[-1]["serverContent"]["inputTranscription"]["text"] == "stop"
    assert server.connections[0].history[1][0] == "model"
    assert server.connections[0].history[1][1] != "a very long answer"


async def test_a_known_handle_restores_the_conversation(server: GeminiLiveServer, tls: TlsPair) -> None:
    server.script.append(ScriptedTurn(says="Noted.", heard="my order is 42"))
    first = await ready_client(server, tls)
    await first.speak()
    turn = await first.until(has("sessionResumptionUpdate"))
    handle = turn[-1]["sessionResumptionUpdate"]["newHandle"]
    await first.ws.close()
    second = await open_client(server, tls)
    message = setup_message()
    message["setup"]["sessionResumption"] = {"handle": handle}
    await second.send(message)
    await second.until(has("setupComplete"))
    assert server.connections[1].resumed_with == handle
    assert server.connections[1].history == [("user", "my order is 42"), ("model", "Noted.")]
    await second.ws.close()


async def expect_close(client: Client) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        await client.until(lambda m: False)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"clientContent": {"turns": [], "turnComplete": True}}, "first message must be a setup"),
        (setup_message(responseModalities=["TEXT"]), NON_AUDIO),
        (setup_message(speechConfig={"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Alloy"}}}), "unknown voice"),
        ({"setup": {"model": "gemini-2.5-flash"}}, "models/{model}"),
        ({"setup": {"model": MODEL, "sessionResumption": {"handle": "nope"}}}, "unknown session handle"),
    ],
)
async def test_a_bad_first_message_closes_with_1007(
    server: GeminiLiveServer, tls: TlsPair, message: dict[str, Any], reason: str
) -> None:
    client = await open_client(server, tls)
    await client.send(message)
    code, text = await expect_close(client)
    assert code == 1007 and reason in text


async def test_a_wrong_or_refused_key_closes_with_1008(server: GeminiLiveServer, tls: TlsPair) -> None:
    client = await open_client(server, tls, key="wrong")
    assert await expect_close(client) == (1008, BAD_KEY)
    server.refuse_key = True
    client = await open_client(server, tls)
    assert await expect_close(client) == (1008, BAD_KEY)


async def test_the_key_may_come_as_a_query_parameter(server: GeminiLiveServer, tls: TlsPair) -> None:
    async with connect(f"{server.url}?key={KEY}", ssl=tls.client) as ws:
        client = Client(ws)
        await client.send(setup_message())
        assert (await client.until(lambda m: True)) == [{"setupComplete": {}}]


async def test_an_unknown_path_is_404(server: GeminiLiveServer, tls: TlsPair) -> None:
    url = server.url.replace(PATH, "/ws/other")
    with pytest.raises(InvalidStatus) as info:
        await connect(url, ssl=tls.client, additional_headers={"x-goog-api-key": KEY})
    assert info.value.response.status_code == 404


async def test_malformed_input_after_setup_is_skipped(server: GeminiLiveServer, tls: TlsPair) -> None:
    client = await ready_client(server, tls)
    await client.send({"realtimeInput": {"audio": {"data": "%%%not base64"}}})
    await client.send({"somethingNew": {}})
    await client.send({"realtimeInput": {"text": "still here?"}})
    got = await client.until(has("serverContent.turnComplete"))
    assert any(has("serverContent.outputTranscription")(m) for m in got)
    assert [list(m) for m in server.connections[0].received[1:3]] == [["realtimeInput"], ["somethingNew"]]


async def test_many_concurrent_sessions_each_get_their_answer(tls: TlsPair) -> None:
    async with GeminiLiveServer(api_key=KEY, ssl_context=tls.server, speed=0) as server:

        async def one_call() -> str:
            client = await ready_client(server, tls)
            await client.speak()
            turn = await client.until(has("serverContent.turnComplete"))
            await client.ws.close()
            return "".join(
                m["serverContent"]["outputTranscription"]["text"]
                for m in turn if has("serverContent.outputTranscription")(m)
            )

        said = await asyncio.gather(*(one_call() for _ in range(40)))
    assert said == [ScriptedTurn().says] * 40
    assert len(server.connections) == 40
