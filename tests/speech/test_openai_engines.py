"""The OpenAI STT and TTS engines against the audio API simulator, over real HTTP."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator

import httpx
import pytest
from openai.types.audio import SpeechCreateParams, Transcription
from openai.types.audio.transcription_create_params import TranscriptionCreateParamsBase
from openai.types.audio_response_format import AudioResponseFormat
from pydantic import TypeAdapter

from agentplatform.audio.frames import rms_dbfs
from agentplatform.catalog import load_catalog
from agentplatform.errors import CredentialsError, ModelError
from agentplatform.speech.stt import build_stt
from agentplatform.speech.tts import build_tts
from agentplatform.testing.openai_audio_server import OpenAIAudioServer
from agentplatform.testing.speech_fixtures import spoken
from agentplatform.testing.stack import simulated_settings
from agentplatform.testing.typed_events import strict_validate

from .conftest import words


@pytest.fixture
async def server() -> AsyncIterator[OpenAIAudioServer]:
    async with OpenAIAudioServer(api_key="test-key") as sim:
        yield sim


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def settings_for(server: OpenAIAudioServer, tmp_path, key: str = "test-key"):
    return simulated_settings(agents_dir=tmp_path, database_url="sqlite://",
                              openai_api_key=key, openai_audio_url=server.url)


def stt(server, http, tmp_path, model=None, key="test-key", language="en"):
    return build_stt("openai", model, language, catalog=load_catalog(),
                     settings=settings_for(server, tmp_path, key), http=http)


def tts(server, http, tmp_path, model=None, voice=None, key="test-key", instructions=None):
    return build_tts("openai", voice, model, catalog=load_catalog(),
                     settings=settings_for(server, tmp_path, key), http=http,
                     instructions=instructions)


async def test_transcription_of_real_speech(server, http, tmp_path):
    result = await stt(server, http, tmp_path).transcribe(
        spoken("Please book a table for two.", 16000), 16000)
    assert {"book", "table", "two"} <= set(words(result.text)), result.text
    assert result.model == "gpt-4o-mini-transcribe"
    assert result.usage["audio_tokens"] > 0 and result.usage["output_tokens"] > 0


async def test_whisper_1_is_billed_in_seconds(server, http, tmp_path):
    result = await stt(server, http, tmp_path, model="whisper-1").transcribe(
        spoken("Good morning.", 8000), 8000)
    assert "morning" in words(result.text)
    assert result.usage == {"seconds": 1.0 if result.audio_seconds <= 1 else 2.0}


async def test_transcription_request_is_shaped_as_openai_documents(server, http, tmp_path):
    await stt(server, http, tmp_path, model="gpt-4o-transcribe").transcribe(
        spoken("Hello.", 8000), 8000)
    (request,) = server.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.authorization == "Bearer test-key"
    documented = set(TranscriptionCreateParamsBase.__annotations__)
    assert set(request.fields) | {"file"} <= documented
    assert request.fields == {"model": "gpt-4o-transcribe", "response_format": "json",
                              "language": "en"}
    assert request.fields["response_format"] in typing.get_args(AudioResponseFormat)
    assert request.file_name.endswith(".wav") and request.file_type == "audio/wav"
    assert request.file_bytes[:4] == b"RIFF" and request.file_bytes[8:12] == b"WAVE"


async def test_simulated_transcription_answer_matches_the_sdk_model(server, http):
    pcm = spoken("Thank you.", 16000)
    from agentplatform.speech.stt_openai import wav_bytes

    for model in ("gpt-4o-mini-transcribe", "whisper-1"):
        response = await http.post(
            server.url + "/v1/audio/transcriptions", headers={"Authorization": "Bearer test-key"},
            data={"model": model}, files={"file": ("a.wav", wav_bytes(pcm, 16000), "audio/wav")})
        assert response.status_code == 200
        strict_validate(TypeAdapter(Transcription), response.content)


async def test_bad_key_is_a_clear_credentials_error(server, http, tmp_path):
    with pytest.raises(CredentialsError, match="OpenAI transcription refused the key.*Incorrect API key"):
        await stt(server, http, tmp_path, key="wrong-key-1234").transcribe(
            spoken("Hello.", 8000), 8000)
    with pytest.raises(CredentialsError, match="OpenAI speech refused the key.*Incorrect API key"):
        [c async for c in tts(server, http, tmp_path, key="wrong-key-1234").synthesize("Hi.")]
    assert [r.status for r in server.requests] == [401, 401]


async def test_model_the_server_does_not_know_is_a_clear_error(server, http, tmp_path):
    engine = stt(server, http, tmp_path)
    engine.model = "gpt-9-transcribe"  # as if the catalog ran ahead of the service
    with pytest.raises(ModelError, match="HTTP 400.*Invalid model 'gpt-9-transcribe'"):
        await engine.transcribe(spoken("Hello.", 8000), 8000)
    speaker = tts(server, http, tmp_path)
    speaker.model = "tts-9"
    with pytest.raises(ModelError, match="HTTP 400.*Invalid model 'tts-9'"):
        [c async for c in speaker.synthesize("Hi.")]


async def test_unreachable_service_is_a_clear_error(http, tmp_path):
    settings = simulated_settings(agents_dir=tmp_path, database_url="sqlite://",
                                  openai_audio_url="http://127.0.0.1:9")
    engine = build_stt("openai", None, None, catalog=load_catalog(), settings=settings, http=http)
    with pytest.raises(ModelError, match="did not answer"):
        await engine.transcribe(spoken("Hello.", 8000), 8000)


async def test_speech_streams_real_voice_as_whole_samples_at_24k(server, http, tmp_path):
    speaker = tts(server, http, tmp_path, voice="nova")
    assert speaker.output_rate == 24000
    chunks = [c async for c in speaker.synthesize("Your appointment is on Tuesday. See you then.")]
    assert server.speech_chunk_bytes % 2 == 1  # the server splits samples on purpose...
    assert len(chunks) > 2 and all(len(c) % 2 == 0 for c in chunks)  # ...we never do
    pcm = b"".join(chunks)
    assert 1.5 < len(pcm) / 2 / 24000 < 6.0
    assert rms_dbfs(pcm) > -35.0


async def test_speech_request_is_shaped_as_openai_documents(server, http, tmp_path):
    [c async for c in tts(server, http, tmp_path, instructions="Speak warmly.").synthesize("Hi.")]
    [c async for c in tts(server, http, tmp_path, model="tts-1", voice="onyx",
                          instructions="Speak warmly.").synthesize("Hi.")]
    first, second = (r.fields for r in server.requests)
    assert first == {"model": "gpt-4o-mini-tts", "input": "Hi.", "voice": "alloy",
                     "response_format": "pcm", "instructions": "Speak warmly."}
    assert "instructions" not in second  # tts-1 does not take voice instructions
    for body in (first, second):
        assert set(body) <= set(SpeechCreateParams.__annotations__)
        assert set(SpeechCreateParams.__required_keys__) <= set(body)
        hints = typing.get_type_hints(SpeechCreateParams)
        assert body["response_format"] in typing.get_args(hints["response_format"])
        named_voices = next(typing.get_args(arg) for arg in typing.get_args(hints["voice"])
                            if typing.get_origin(arg) is typing.Literal)
        assert body["voice"] in named_voices
    assert all(r.authorization == "Bearer test-key" for r in server.requests)


async def test_closing_speech_early_closes_the_stream(server, http, tmp_path):
    long_text = " ".join(f"This is sentence {n} of a long answer." for n in range(10))
    stream = tts(server, http, tmp_path).synthesize(long_text)
    assert await anext(stream)
    await stream.aclose()
    # The pooled connection is free again: a next request goes through at once.
    assert [c async for c in tts(server, http, tmp_path).synthesize("Next.")]


async def test_too_long_input_is_refused_before_sending(server, http, tmp_path):
    with pytest.raises(ModelError, match="at most 4096 characters"):
        [c async for c in tts(server, http, tmp_path).synthesize("a" * 5000)]
    assert server.requests == []


async def test_no_platform_key_is_a_credentials_error_at_build_time(server, http, tmp_path):
    with pytest.raises(CredentialsError, match="OPENAI_API_KEY"):
        stt(server, http, tmp_path, key="")
    with pytest.raises(CredentialsError, match="OPENAI_API_KEY"):
        tts(server, http, tmp_path, key="")
    # An agent's own key wins over the (missing) platform key.
    engine = build_stt("openai", None, None, catalog=load_catalog(),
                       settings=settings_for(server, tmp_path, key=""), http=http,
                       api_key="test-key")
    assert (await engine.transcribe(spoken("Hello.", 8000), 8000)).text
