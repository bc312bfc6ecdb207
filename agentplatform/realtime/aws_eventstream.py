"""AWS event-stream binary framing (``application/vnd.amazon.eventstream``), both
ways, plus SigV4 for a streamed request: the signature of the request itself
(which seeds the chain) and the chained signature of each event a client sends.

Bedrock's bidirectional streams carry one of these messages per event. A message is::

    prelude   total_length u32 | headers_length u32 | prelude_crc u32 (CRC32 of the 8 bytes)
    headers   name_len u8 | name | type u8 | value (typed, see ``_TYPE_*``)
    payload   raw bytes
    trailer   message_crc u32 (CRC32 of everything before it)

Everything here is pure (no I/O): the adapter signs, the simulator verifies, with the
same code paths botocore uses for the request and a spec-following chain for events.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PRELUDE_LENGTH = 12
_TRAILER_LENGTH = 4
# The service rejects bigger messages; refusing them early keeps a bad peer from
# making us buffer without bound.
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024

_TYPE_TRUE = 0
_TYPE_FALSE = 1
_TYPE_BYTE = 2
_TYPE_SHORT = 3
_TYPE_INT = 4
_TYPE_LONG = 5
_TYPE_BYTES = 6
_TYPE_STRING = 7
_TYPE_TIMESTAMP = 8
_TYPE_UUID = 9


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(when: datetime) -> int:
    """Exact integer milliseconds (float ``timestamp()`` can be off by one)."""
    return (when - _EPOCH) // _MILLISECOND


def from_millis(millis: int) -> datetime:
    return _EPOCH + millis * _MILLISECOND


class EventStreamError(ValueError):
    """A message that is not valid event-stream framing (length, CRC, header type)."""


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A header of type timestamp: milliseconds since the epoch."""

    millis: int


@dataclass(frozen=True, slots=True)
class Int32:
    """A header of type int32 (a bare ``int`` would be ambiguous among the int types)."""

    value: int


HeaderValue = str | bytes | bool | Timestamp | Int32
Headers = dict[str, HeaderValue]


@dataclass(slots=True)
class Message:
    headers: Headers = field(default_factory=dict)
    payload: bytes = b""


# ---------------------------------------------------------------- encode


def encode_header(name: str, value: HeaderValue) -> bytes:
    """One header in wire form; exposed because event signing hashes the ``:date`` header."""
    raw_name = name.encode("utf-8")
    if len(raw_name) > 255:
        raise EventStreamError(f"header name too long: {name!r}")
    head = bytes([len(raw_name)]) + raw_name
    if value is True:
        return head + bytes([_TYPE_TRUE])
    if value is False:
        return head + bytes([_TYPE_FALSE])
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return head + struct.pack(">BH", _TYPE_STRING, len(raw)) + raw
    if isinstance(value, bytes):
        return head + struct.pack(">BH", _TYPE_BYTES, len(value)) + value
    if isinstance(value, Timestamp):
        return head + struct.pack(">Bq", _TYPE_TIMESTAMP, value.millis)
    if isinstance(value, Int32):
        return head + struct.pack(">Bi", _TYPE_INT, value.value)
    raise EventStreamError(f"unsupported header value for {name!r}: {type(value).__name__}")


def encode_headers(headers: Headers) -> bytes:
    return b"".join(encode_header(name, value) for name, value in headers.items())


def encode_message(headers: Headers, payload: bytes = b"") -> bytes:
    """Frame ``payload`` with ``headers`` into one event-stream message."""
    raw_headers = encode_headers(headers)
    total = PRELUDE_LENGTH + len(raw_headers) + len(payload) + _TRAILER_LENGTH
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


# ---------------------------------------------------------------- decode


def _decode_headers(raw: bytes) -> Headers:
    headers: Headers = {}
    pos = 0
    end = len(raw)
    try:
        while pos < end:
            name_len = raw[pos]
            name = raw[pos + 1 : pos + 1 + name_len].decode("utf-8")
            pos += 1 + name_len
            kind = raw[pos]
            pos += 1
            value: HeaderValue | int
            if kind == _TYPE_TRUE:
                value = True
            elif kind == _TYPE_FALSE:
                value = False
            elif kind in (_TYPE_STRING, _TYPE_BYTES):
                (length,) = struct.unpack_from(">H", raw, pos)
                data = raw[pos + 2 : pos + 2 + length]
                if len(data) != length:
                    raise EventStreamError(f"header {name!r} runs past the header block")
                value = data.decode("utf-8") if kind == _TYPE_STRING else bytes(data)
                pos += 2 + length
            elif kind == _TYPE_TIMESTAMP:
                value = Timestamp(struct.unpack_from(">q", raw, pos)[0])
                pos += 8
            elif kind in _FIXED_INTS:
                fmt, size = _FIXED_INTS[kind]
                number = struct.unpack_from(fmt, raw, pos)[0]
                value = Int32(number) if kind == _TYPE_INT else number
                pos += size
            elif kind == _TYPE_UUID:
                value = bytes(raw[pos : pos + 16])
                pos += 16
            else:
                raise EventStreamError(f"unknown header type {kind} for {name!r}")
            headers[name] = value  # type: ignore[assignment]
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from exc
    if pos != end:
        raise EventStreamError("headers run past their declared length")
    return headers


_FIXED_INTS: dict[int, tuple[str, int]] = {
    _TYPE_BYTE: (">b", 1),
    _TYPE_SHORT: (">h", 2),
    _TYPE_INT: (">i", 4),
    _TYPE_LONG: (">q", 8),
}


def decode_message(data: bytes) -> Message:
    """Decode exactly one whole message, checking both CRCs."""
    if len(data) < PRELUDE_LENGTH + _TRAILER_LENGTH:
        raise EventStreamError("message shorter than its prelude and trailer")
    total, headers_len, prelude_crc = struct.unpack_from(">III", data, 0)
    if zlib.crc32(data[:8]) != prelude_crc:
        raise EventStreamError("prelude CRC mismatch")
    if total != len(data):
        raise EventStreamError(f"message length {len(data)} != declared {total}")
    if PRELUDE_LENGTH + headers_len + _TRAILER_LENGTH > total:
        raise EventStreamError("headers longer than the message")
    (message_crc,) = struct.unpack_from(">I", data, total - _TRAILER_LENGTH)
    if zlib.crc32(data[: total - _TRAILER_LENGTH]) != message_crc:
        raise EventStreamError("message CRC mismatch")
    headers_end = PRELUDE_LENGTH + headers_len
    headers = _decode_headers(data[PRELUDE_LENGTH:headers_end])
    return Message(headers, bytes(data[headers_end : total - _TRAILER_LENGTH]))


class MessageDecoder:
    """Reassembles messages from a byte stream cut at arbitrary points (HTTP/2 DATA)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes; return every message now complete. Raises ``EventStreamError``."""
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= PRELUDE_LENGTH:
            total, _, prelude_crc = struct.unpack_from(">III", self._buffer, 0)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total > MAX_MESSAGE_LENGTH or total < PRELUDE_LENGTH + _TRAILER_LENGTH:
                raise EventStreamError(f"implausible message length {total}")
            if len(self._buffer) < total:
                break
            messages.append(decode_message(bytes(self._buffer[:total])))
            del self._buffer[:total]
        return messages

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buffer)


# ---------------------------------------------------------------- SigV4 event signing

STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
_EVENT_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 derived key for one day (``date`` is ``YYYYMMDD``)."""
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def event_string_to_sign(
    when: datetime, region: str, service: str, prior_signature: bytes, payload: bytes
) -> str:
    """What a streamed event's signature covers: the time, the scope, the previous
    signature (so events cannot be dropped or reordered) and the payload."""
    date_header = encode_header(":date", Timestamp(to_millis(when)))
    return "\n".join(
        (
            _EVENT_ALGORITHM,
            when.strftime("%Y%m%dT%H%M%SZ"),
            f"{when:%Y%m%d}/{region}/{service}/aws4_request",
            prior_signature.hex(),
            hashlib.sha256(date_header).hexdigest(),
            hashlib.sha256(payload).hexdigest(),
        )
    )


def event_signature(
    secret_key: str, when: datetime, region: str, service: str, prior_signature: bytes,
    payload: bytes,
) -> bytes:
    """The raw 32-byte ``:chunk-signature`` of one event."""
    key = signing_key(secret_key, f"{when:%Y%m%d}", region, service)
    sts = event_string_to_sign(when, region, service, prior_signature, payload)
    return hmac.new(key, sts.encode(), hashlib.sha256).digest()


def _whole_millis(when: datetime) -> datetime:
    """The ``:date`` header carries milliseconds; sign exactly what is sent."""
    return when.replace(microsecond=(when.microsecond // 1000) * 1000)


class EventSigner:
    """Wraps each outgoing event in a signed envelope, chaining signatures from the
    seed (the initial request's signature). One per stream; not reusable."""

    def __init__(
        self, secret_key: str, region: str, service: str, seed_signature_hex: str
    ) -> None:
        self._secret = secret_key
        self._region = region
        self._service = service
        self._prior = bytes.fromhex(seed_signature_hex)
        self._keys: dict[str, bytes] = {}

    def _key(self, date: str) -> bytes:
        key = self._keys.get(date)
        if key is None:
            self._keys = {date: signing_key(self._secret, date, self._region, self._service)}
            key = self._keys[date]
        return key

    def sign(self, payload: bytes, when: datetime | None = None) -> bytes:
        """The signed envelope message for ``payload`` (an encoded inner message;
        ``b""`` for the closing empty event)."""
        when = _whole_millis(when or datetime.now(UTC))
        sts = event_string_to_sign(when, self._region, self._service, self._prior, payload)
        signature = hmac.new(self._key(f"{when:%Y%m%d}"), sts.encode(), hashlib.sha256).digest()
        self._prior = signature
        return encode_message(
            {":date": Timestamp(to_millis(when)), ":chunk-signature": signature}, payload
        )


def verify_signed_event(
    message: Message, secret_key: str, region: str, service: str, prior_signature: bytes
) -> bytes:
    """Check one signed envelope against the chain; return its signature (the next
    link). Raises ``EventStreamError`` when the signature does not match."""
    date = message.headers.get(":date")
    signature = message.headers.get(":chunk-signature")
    if not isinstance(date, Timestamp) or not isinstance(signature, bytes):
        raise EventStreamError("signed event lacks :date or :chunk-signature")
    when = from_millis(date.millis)
    expected = event_signature(secret_key, when, region, service, prior_signature, message.payload)
    if not hmac.compare_digest(expected, signature):
        raise EventStreamError("event signature does not match the chain")
    return signature


# ---------------------------------------------------------------- SigV4 for the request


def sign_request(
    url: str, *, access_key: str, secret_key: str, session_token: str | None, region: str,
    service: str,
) -> tuple[list[tuple[str, str]], str]:
    """SigV4 headers (lower-case, for HTTP/2) for a streaming POST to ``url``, and the
    seed signature (hex) the per-event signatures chain from."""
    request = AWSRequest(method="POST", url=url, data=b"", headers={
        "content-type": "application/vnd.amazon.eventstream",
        "x-amz-content-sha256": STREAMING_PAYLOAD,
    })
    SigV4Auth(Credentials(access_key, secret_key, session_token), service, region).add_auth(
        request
    )
    headers = [(k.lower(), v) for k, v in request.headers.items()]
    seed = request.headers["Authorization"].rsplit("Signature=", 1)[1].strip()
    return headers, seed


def verify_request(
    method: str, path: str, headers: dict[str, str], *, access_key: str, secret_key: str,
    region: str, service: str = "bedrock",
) -> str | None:
    """Recompute a received request's SigV4 signature from the headers it signed.
    ``None`` when it matches; otherwise the service's error type for the refusal."""
    fields = dict(
        part.strip().split("=", 1)
        for part in headers.get("authorization", "").removeprefix("AWS4-HMAC-SHA256").split(",")
        if "=" in part
    )
    if fields.get("Credential", "").split("/")[0] != access_key:
        return "UnrecognizedClientException"
    if headers.get("x-amz-content-sha256") != STREAMING_PAYLOAD:
        return "InvalidSignatureException"
    authority = headers.get(":authority", "")
    signed = fields.get("SignedHeaders", "").split(";")
    request = AWSRequest(method=method, url=f"https://{authority}{path}", data=b"", headers={
        name: authority if name == "host" else headers.get(name, "") for name in signed})
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
    try:
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request)
    except (KeyError, ValueError):
        return "InvalidSignatureException"
    return None if hmac.compare_digest(expected, fields.get("Signature", "")) else \
        "InvalidSignatureException"
