"""GET /api/calls/{id}/recording: the WAV, behind the API's access rules."""

from __future__ import annotations

import wave

from agentplatform.web.passwords import hash_password

from .conftest import remote

HASH = hash_password("s3cret-pass")
KEY = {"X-API-Key": "k-123"}


def _recording(directory, call_id: str) -> bytes:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{call_id}.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(range(256)) * 64)
    return path.read_bytes()


async def test_the_recording_is_served_as_wav_to_a_client_with_the_key(tmp_path, agent_file):
    body = _recording(tmp_path / "rec", "abc123")
    async with remote(tmp_path, admin_password_hash=HASH, api_key="k-123",
                      recordings_dir=tmp_path / "rec") as client:
        response = await client.get("/api/calls/abc123/recording", headers=KEY)
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        assert response.content == body
        # A player seeks with byte ranges.
        part = await client.get("/api/calls/abc123/recording",
                                headers={**KEY, "Range": "bytes=44-99"})
        assert part.status_code == 206 and part.content == body[44:100]


async def test_the_recording_needs_the_key_like_the_rest_of_the_api(tmp_path, agent_file):
    _recording(tmp_path / "rec", "abc123")
    async with remote(tmp_path, admin_password_hash=HASH, api_key="k-123",
                      recordings_dir=tmp_path / "rec") as client:
        assert (await client.get("/api/calls/abc123/recording")).status_code == 401
        wrong = await client.get("/api/calls/abc123/recording", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401


async def test_a_call_without_a_recording_is_404(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH, api_key="k-123",
                      recordings_dir=tmp_path / "rec") as client:
        response = await client.get("/api/calls/nosuchcall/recording", headers=KEY)
        assert response.status_code == 404


async def test_an_id_that_tries_to_leave_the_recordings_folder_is_404(tmp_path, agent_file):
    (tmp_path / "secret.wav").write_bytes(b"RIFF not yours")
    async with remote(tmp_path, admin_password_hash=HASH, api_key="k-123",
                      recordings_dir=tmp_path / "rec") as client:
        for call_id in ("..%2Fsecret", "%2E%2E%2Fsecret", "a.b"):
            response = await client.get(f"/api/calls/{call_id}/recording", headers=KEY)
            assert response.status_code == 404, call_id
