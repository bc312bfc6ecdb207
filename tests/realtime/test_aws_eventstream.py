import hashlib
import hmac
import struct
import zlib
from datetime import UTC, datetime

import pytest
from botocore.eventstream import EventStreamBuffer

from agentplatform.realtime.aws_eventstream import (
    EventSigner,
    EventStreamError,
    Int32,
    Message,
    MessageDecoder,
    Timestamp,
    decode_message,
    encode_message,
    sign_request,
    verify_request,
    verify_signed_event,
)


def _botocore_decode(data: bytes) -> list:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_encoded_message_is_read_back_by_botocore_decoder():
    headers = {":message-type": "event", ":event-type": "chunk", "flag": True, "off": False,
               "blob": b"\x00\x01\xff", "count": Int32(-7)}
    data = encode_message(headers, b'{"bytes":"e30="}')

    (message,) = _botocore_decode(data)

    assert message.payload == b'{"bytes":"e30="}'
    assert message.headers == {":message-type": "event", ":event-type": "chunk", "flag": True,
                               "off": False, "blob": b"\x00\x01\xff", "count": -7}


def test_timestamp_header_survives_botocore_and_our_decoder():
    data = encode_message({":date": Timestamp(1_700_000_000_123)}, b"x")

    (boto,) = _botocore_decode(data)
    ours = decode_message(data)

    assert ours.headers[":date"] == Timestamp(1_700_000_000_123)
    assert boto.headers[":date"] == 1_700_000_000_123


def test_encode_decode_round_trip_keeps_headers_and_payload():
    headers = {"a": "text", "b": b"raw", "c": Timestamp(5), "d": Int32(2**31 - 1), "e": True}
    message = decode_message(encode_message(headers, b"payload bytes"))
    assert message == Message(headers, b"payload bytes")


def test_empty_message_has_the_minimum_length_of_sixteen_bytes():
    data = encode_message({}, b"")
    assert len(data) == 16
    assert struct.unpack(">II", data[:8]) == (16, 0)
    assert decode_message(data) == Message({}, b"")


def test_corrupt_payload_fails_the_message_crc():
    data = bytearray(encode_message({"k": "v"}, b"hello"))
    data[-6] ^= 0x01
    with pytest.raises(EventStreamError, match="message CRC"):
        decode_message(bytes(data))


def test_corrupt_prelude_fails_the_prelude_crc():
    data = bytearray(encode_message({"k": "v"}, b"hello"))
    data[3] ^= 0x01
    with pytest.raises(EventStreamError, match="prelude CRC"):
        decode_message(bytes(data))


def test_unknown_header_type_is_rejected():
    raw_headers = b"\x01k\x0e"  # header "k" of type 14, which does not exist
    total = 12 + len(raw_headers) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers
    data = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(EventStreamError, match="unknown header type"):
        decode_message(data)


def test_stream_decoder_reassembles_messages_cut_at_every_byte():
    first = encode_message({"n": "1"}, b"one")
    second = encode_message({"n": "2"}, b"two" * 100)
    decoder = MessageDecoder()
    seen = []
    for i in range(len(first + second)):
        seen += decoder.feed((first + second)[i : i + 1])
    assert [m.payload for m in seen] == [b"one", b"two" * 100]
    assert decoder.pending == 0


def test_stream_decoder_rejects_an_implausible_length_before_buffering_it():
    prelude = struct.pack(">II", 1 << 30, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(EventStreamError, match="implausible"):
        MessageDecoder().feed(prelude)


# ---------------------------------------------------------------- event signing


def _independent_signature(secret, when, region, prior: bytes, payload: bytes) -> bytes:
    """SigV4 event signature computed from the spec, without the module's helpers."""
    def sign(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = sign(f"AWS4{secret}".encode(), when.strftime("%Y%m%d"))
    for part in (region, "bedrock", "aws4_request"):
        key = sign(key, part)
    millis = int(when.replace(tzinfo=UTC).timestamp()) * 1000 + when.microsecond // 1000
    date_header = b"\x05:date" + b"\x08" + struct.pack(">q", millis)
    sts = "\n".join([
        "AWS4-HMAC-SHA256-PAYLOAD",
        when.strftime("%Y%m%dT%H%M%SZ"),
        f"{when:%Y%m%d}/{region}/bedrock/aws4_request",
        prior.hex(),
        hashlib.sha256(date_header).hexdigest(),
        hashlib.sha256(payload).hexdigest(),
    ])
    return sign(key, sts)


def test_event_signatures_chain_from_the_seed_signature():
    seed = "a1" * 32
    signer = EventSigner("secret/KEY", "us-west-2", "bedrock", seed)
    t1 = datetime(2025, 3, 4, 5, 6, 7, 89_000, tzinfo=UTC)
    t2 = datetime(2025, 3, 4, 5, 6, 8, 1_000, tzinfo=UTC)

    first = decode_message(signer.sign(b"first payload", t1))
    second = decode_message(signer.sign(b"", t2))

    expected1 = _independent_signature("secret/KEY", t1, "us-west-2", bytes.fromhex(seed),
                                       b"first payload")
    expected2 = _independent_signature("secret/KEY", t2, "us-west-2", expected1, b"")
    assert first.headers[":chunk-signature"] == expected1
    assert second.headers[":chunk-signature"] == expected2
    assert first.headers[":date"] == Timestamp(int(t1.timestamp()) * 1000 + 89)
    assert first.payload == b"first payload"


def test_sub_millisecond_time_is_dropped_before_signing():
    signer = EventSigner("s", "us-east-1", "bedrock", "00" * 32)
    when = datetime(2025, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)
    message = decode_message(signer.sign(b"p", when))
    verify_signed_event(message, "s", "us-east-1", "bedrock", bytes(32))  # does not raise


def test_verifier_accepts_the_chain_and_returns_each_link():
    seed = "0f" * 32
    signer = EventSigner("k", "eu-west-1", "bedrock", seed)
    messages = [decode_message(signer.sign(p)) for p in (b"a", b"b", b"")]
    prior = bytes.fromhex(seed)
    for message in messages:
        prior = verify_signed_event(message, "k", "eu-west-1", "bedrock", prior)
    assert prior == messages[-1].headers[":chunk-signature"]


def test_verifier_rejects_events_out_of_order():
    seed = "0f" * 32
    signer = EventSigner("k", "eu-west-1", "bedrock", seed)
    first, second = (decode_message(signer.sign(p)) for p in (b"a", b"b"))
    with pytest.raises(EventStreamError, match="signature"):
        verify_signed_event(second, "k", "eu-west-1", "bedrock", bytes.fromhex(seed))
    assert first  # the skipped event was real


def test_verifier_rejects_a_tampered_payload_and_a_wrong_secret():
    seed = bytes(32)
    message = decode_message(EventSigner("k", "us-east-1", "bedrock", seed.hex()).sign(b"a"))
    tampered = Message(dict(message.headers), b"b")
    with pytest.raises(EventStreamError):
        verify_signed_event(tampered, "k", "us-east-1", "bedrock", seed)
    with pytest.raises(EventStreamError):
        verify_signed_event(message, "other", "us-east-1", "bedrock", seed)


# ---------------------------------------------------------------- the signed request

URL = "https://127.0.0.1:8443/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"


def _as_received(headers: list[tuple[str, str]]) -> dict[str, str]:
    received = dict(headers)
    received.update({":authority": "127.0.0.1:8443", ":method": "POST"})
    return received


def test_signed_request_carries_streaming_headers_and_verifies():
    headers, seed = sign_request(URL, access_key="AKID", secret_key="s3cret",
                                 session_token="tok", region="us-west-2", service="bedrock")
    received = _as_received(headers)
    assert received["x-amz-content-sha256"] == "STREAMING-AWS4-HMAC-SHA256-EVENTS"
    assert received["content-type"] == "application/vnd.amazon.eventstream"
    assert received["x-amz-security-token"] == "tok"
    assert received["authorization"].endswith(f"Signature={seed}")
    assert len(bytes.fromhex(seed)) == 32
    path = URL.split("8443", 1)[1]
    assert verify_request("POST", path, received, access_key="AKID", secret_key="s3cret",
                          region="us-west-2") is None


def test_request_verification_names_what_is_wrong():
    headers, _ = sign_request(URL, access_key="AKID", secret_key="s3cret", session_token=None,
                              region="us-east-1", service="bedrock")
    received = _as_received(headers)
    path = URL.split("8443", 1)[1]
    kwargs = dict(access_key="AKID", region="us-east-1")
    assert verify_request("POST", path, received, secret_key="other", **kwargs) == \
        "InvalidSignatureException"
    assert verify_request("POST", path.replace("nova-2", "nova-3"), received,
                          secret_key="s3cret", **kwargs) == "InvalidSignatureException"
    assert verify_request("POST", path, received, secret_key="s3cret", access_key="AKOTHER",
                          region="us-east-1") == "UnrecognizedClientException"
