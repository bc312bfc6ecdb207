"""The Twilio side of Media Streams, as Twilio documents it: what the simulator sends is
the documented shape, and what it accepts from the server is as strict as Twilio."""

from __future__ import annotations

import base64
import json

import pytest

from agentplatform.testing import twilio_wire as twilio

SID = "MZ" + "1" * 32


def test_every_message_but_connected_carries_the_stream_and_a_string_sequence_number() -> None:
    messages = [
        twilio.start(stream_sid=SID, account_sid="AC1", call_sid="CA1", sequence_number=1),
        twilio.media(stream_sid=SID, sequence_number=2, chunk=1, timestamp=0, payload=b"\xff" * 160),
        twilio.dtmf(stream_sid=SID, sequence_number=3, digit="5"),
        twilio.mark(stream_sid=SID, sequence_number=4, name="m"),
        twilio.stop(stream_sid=SID, sequence_number=5, account_sid="AC1", call_sid="CA1"),
    ]
    for message in messages:
        assert message["streamSid"] == SID
        assert isinstance(message["sequenceNumber"], str) and message["sequenceNumber"].isdigit()
    assert twilio.connected() == {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def test_start_and_media_have_the_documented_fields() -> None:
    start = twilio.start(stream_sid=SID, account_sid="AC1", call_sid="CA1",
                         custom_parameters={"token": "t"})["start"]
    assert set(start) == {"accountSid", "streamSid", "callSid", "tracks", "customParameters", "mediaFormat"}
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    media = twilio.media(stream_sid=SID, sequence_number=2, chunk=1, timestamp=0, payload=b"\x01\x02")["media"]
    assert set(media) == {"track", "chunk", "timestamp", "payload"}
    assert all(isinstance(media[k], str) for k in media)
    assert base64.b64decode(media["payload"]) == b"\x01\x02"


def test_encode_refuses_numbers_json_does_not_have() -> None:
    with pytest.raises(ValueError):
        twilio.encode({"event": "media", "x": float("nan")})


@pytest.mark.parametrize("frame", [
    json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "AAAA"}, "sequenceNumber": "1"}),
    json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "AAAA", "track": "outbound"}}),
    json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "not base64!"}}),
    json.dumps({"event": "media", "streamSid": 7, "media": {"payload": "AAAA"}}),
    json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": 3}}),
    json.dumps({"event": "mark", "streamSid": SID}),
    json.dumps({"event": "clear"}),
    json.dumps({"event": "hangup", "streamSid": SID}),
    '{"event": "clear", "streamSid": NaN}',
    "[]",
])
def test_the_server_s_frames_are_checked_as_strictly_as_twilio_does(frame: str) -> None:
    with pytest.raises(twilio.ProtocolViolation) as caught:
        twilio.read_server_frame(frame)
    assert caught.value.code == 31951


def test_a_binary_frame_is_error_31950() -> None:
    with pytest.raises(twilio.ProtocolViolation) as caught:
        twilio.read_server_frame(b"\x00")
    assert caught.value.code == 31950


def test_the_documented_server_frames_are_read() -> None:
    assert twilio.read_server_frame(json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "AQI="}})) \
        == twilio.ServerMedia(SID, b"\x01\x02")
    assert twilio.read_server_frame(json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "x"}})) \
        == twilio.ServerMark(SID, "x")
    assert twilio.read_server_frame(json.dumps({"event": "clear", "streamSid": SID})) == twilio.ServerClear(SID)
