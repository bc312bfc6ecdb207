"""The OpenAI audio simulator refuses what OpenAI refuses, in OpenAI's error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from agentplatform.speech.stt_openai import wav_bytes
from agentplatform.testing.openai_audio_server import OpenAIAudioServer
from agentplatform.testing.speech_fixtures import spoken

AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture
async def server() -> AsyncIterator[OpenAIAudioServer]:
    async with OpenAIAudioServer(api_key="test-key") as sim:
        yield sim


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_missing_key_is_401_saying_so(server, http):
    response = await http.post(server.url + "/v1/audio/speech",
                               json={"model": "tts-1", "input": "Hi", "voice": "alloy"})
    assert response.status_code == 401
    assert "didn't provide an API key" in error_of(response)["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "tts-1", "input": "Hi", "voice": "joe", "response_format": "pcm"}, "voice"),
    ({"model": "tts-1", "input": "Hi", "response_format": "pcm"}, "voice"),
    ({"model": "tts-1", "input": "Hi", "voice": "alloy", "response_format": "ogg"}, "response_format"),
    ({"model": "tts-1", "input": "Hi", "voice": "alloy", "response_format": "pcm", "speed": 9},
     "speed"),
])
async def test_bad_speech_requests_are_400_naming_the_field(server, http, body, param):
    response = await http.post(server.url + "/v1/audio/speech", json=body, headers=AUTH)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


async def test_unknown_speech_field_is_refused(server, http):
    response = await http.post(server.url + "/v1/audio/speech", headers=AUTH, json={
        "model": "tts-1", "input": "Hi", "voice": "alloy", "format": "pcm"})
    assert response.status_code == 400
    assert "Unrecognized request argument supplied: format" in error_of(response)["message"]


async def test_wav_speech_is_a_streamed_wav_at_24k(server, http):
    response = await http.post(server.url + "/v1/audio/speech", headers=AUTH, json={
        "model": "tts-1", "input": "Hello there.", "voice": "echo", "response_format": "wav"})
    assert response.status_code == 200
    assert response.content[:4] == b"RIFF" and int.from_bytes(response.content[24:28], "little") == 24000
    assert len(response.content) - 44 > 24000  # more than half a second of voice


async def test_gpt4o_transcription_takes_only_json_or_text(server, http):
    wav = wav_bytes(spoken("Hello.", 16000), 16000)
    srt = await http.post(server.url + "/v1/audio/transcriptions", headers=AUTH,
                          data={"model": "gpt-4o-transcribe", "response_format": "srt"},
                          files={"file": ("a.wav", wav, "audio/wav")})
    assert srt.status_code == 400 and error_of(srt)["param"] == "response_format"
    text = await http.post(server.url + "/v1/audio/transcriptions", headers=AUTH,
                           data={"model": "gpt-4o-transcribe", "response_format": "text"},
                           files={"file": ("a.wav", wav, "audio/wav")})
    assert text.status_code == 200 and "hello" in text.text.lower()


async def test_transcription_without_a_file_or_with_junk_is_400(server, http):
    no_file = await http.post(server.url + "/v1/audio/transcriptions", headers=AUTH,
                              data={"model": "whisper-1"})
    assert no_file.status_code == 400 and error_of(no_file)["param"] == "file"
    junk = await http.post(server.url + "/v1/audio/transcriptions", headers=AUTH,
                           data={"model": "whisper-1"},
                           files={"file": ("a.wav", b"not audio at all", "audio/wav")})
    assert junk.status_code == 400 and "Invalid file format" in error_of(junk)["message"]
    assert [r.status for r in server.requests] == [400, 400]
