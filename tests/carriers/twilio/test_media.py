"""Media Streams parse/build: typed messages, and every kind of bad frame named."""

from __future__ import annotations

import base64

import orjson
import pytest

from agentplatform.carriers.twilio import media as wire
from agentplatform.carriers.twilio.media import MalformedMessage, parse_message

SID = "MZ0123"


def test_parses_connected_and_start_with_custom_parameters() -> None:
    assert isinstance(parse_message(wire.connected_message()), wire.Connected)
    start = parse_message(wire.start_message(
        stream_sid=SID, account_sid="AC1", call_sid="CA1", custom_parameters={"agent": "front", "to": "+1"},
    ))
    assert isinstance(start, wire.Start)
    assert (start.stream_sid, start.account_sid, start.call_sid) == (SID, "AC1", "CA1")
    assert start.custom_parameters == {"agent": "front", "to": "+1"}
    assert start.tracks == ["inbound"]
    assert (start.media_format.encoding, start.media_format.sample_rate) == ("audio/x-mulaw", 8000)


def test_parses_media_payload_to_bytes_and_string_numbers_to_ints() -> None:
    audio = bytes(range(160))
    msg = parse_message(wire.inbound_media_message(stream_sid=SID, sequence_number=7, chunk=3, timestamp=40, ulaw=audio))
    assert isinstance(msg, wire.Media)
    assert (msg.payload, msg.chunk, msg.timestamp, msg.sequence_number, msg.track) == (audio, 3, 40, 7, "inbound")


def test_parses_mark_dtmf_and_stop() -> None:
    mark = parse_message(wire.inbound_mark_message(stream_sid=SID, sequence_number=2, name="item1:480"))
    dtmf = parse_message(wire.dtmf_message(stream_sid=SID, sequence_number=3, digit="#"))
    stop = parse_message(wire.stop_message(stream_sid=SID, sequence_number=4, account_sid="AC1", call_sid="CA1"))
    assert isinstance(mark, wire.Mark) and mark.name == "item1:480"
    assert isinstance(dtmf, wire.DtmfDigit) and dtmf.digit == "#"
    assert isinstance(stop, wire.Stop) and (stop.stream_sid, stop.call_sid) == (SID, "CA1")


@pytest.mark.parametrize(("frame", "kind"), [
    ("{not json", "json"),
    ("[1, 2]", "json"),
    ('{"event": "hello", "streamSid": "MZ0123"}', "unknown_event"),
    ('{"streamSid": "MZ0123"}', "unknown_event"),
    ('{"event": "media", "streamSid": "MZ0123", "media": {"timestamp": "0", "payload": "@@@"}}', "base64"),
    ('{"event": "media", "streamSid": "MZ0123", "media": {"timestamp": "0", "payload": 5}}', "base64"),
    ('{"event": "media", "streamSid": "MZ0123", "media": {"payload": "AAAA"}}', "shape"),
    ('{"event": "media", "streamSid": "MZ0123", "media": {"timestamp": "x", "payload": "AAAA"}}', "shape"),
    ('{"event": "mark", "streamSid": "MZ0123"}', "shape"),
    ('{"event": "start", "streamSid": "MZ0123", "start": {"callSid": "CA1"}}', "shape"),
])
def test_malformed_frames_raise_with_their_kind(frame: str, kind: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_message(frame)
    assert caught.value.kind == kind


def test_media_message_is_the_exact_twilio_shape() -> None:
    audio = b"\x00\xff\x7f" * 50
    msg = orjson.loads(wire.media_message(SID, audio))
    assert msg == {"event": "media", "streamSid": SID, "media": {"payload": base64.b64encode(audio).decode()}}


def test_media_message_quotes_an_odd_stream_id_safely() -> None:
    msg = orjson.loads(wire.media_message('MZ"\\x', b"\x01"))
    assert msg["streamSid"] == 'MZ"\\x'


def test_mark_and_clear_messages() -> None:
    assert orjson.loads(wire.mark_message(SID, "a")) == {"event": "mark", "streamSid": SID, "mark": {"name": "a"}}
    assert orjson.loads(wire.clear_message(SID)) == {"event": "clear", "streamSid": SID}


def test_outbound_parser_reads_what_we_build() -> None:
    media = wire.parse_outbound(wire.media_message(SID, b"\x01\x02"))
    mark = wire.parse_outbound(wire.mark_message(SID, "m"))
    clear = wire.parse_outbound(wire.clear_message(SID))
    assert isinstance(media, wire.OutboundMedia) and media.payload == b"\x01\x02"
    assert isinstance(mark, wire.OutboundMark) and mark.name == "m"
    assert isinstance(clear, wire.OutboundClear) and clear.stream_sid == SID


def test_outbound_parser_rejects_extra_fields_like_twilio() -> None:
    with pytest.raises(MalformedMessage) as caught:
        wire.parse_outbound('{"event": "clear", "streamSid": "MZ0123", "extra": 1}')
    assert caught.value.kind == "shape"
