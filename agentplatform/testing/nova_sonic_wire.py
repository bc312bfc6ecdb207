"""The Nova Sonic simulator's own reading and writing of the wire, kept apart from
the adapter's modules on purpose.

If the simulator built its messages with the adapter's ``nova_events`` and
``aws_eventstream``, a misreading of AWS's format would sit on both sides and every
test would pass (that is how capitalised exception names went unnoticed). So this
module is written from AWS's documents and models instead: event-stream messages are
decoded by botocore's parser, encoded by the few lines below (the framing in the
event-stream specification), event signatures are recomputed from the SigV4
streaming rules, and exception names follow the Bedrock model's
``InvokeModelWithBidirectionalStreamOutput`` union (``modelTimeoutException`` …).
AWS's SDK checks this module from the outside (``tests/testing/test_nova_referee.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

INPUT_RATE = 16000
OUTPUT_RATE = 24000
# What the service sends as text when the caller barges in (AWS's samples test for it).
INTERRUPTED_TEXT = '{ "interrupted" : true }'

# The exception members of the Bedrock model's InvokeModelWithBidirectionalStreamOutput,
# spelt as the service puts them in the ``:exception-type`` header.
MODEL_TIMEOUT = "modelTimeoutException"
VALIDATION = "validationException"
THROTTLING = "throttlingException"
INTERNAL_SERVER = "internalServerException"
MODEL_STREAM_ERROR = "modelStreamErrorException"
SERVICE_UNAVAILABLE = "serviceUnavailableException"
STREAM_EXCEPTIONS = frozenset({MODEL_TIMEOUT, VALIDATION, THROTTLING, INTERNAL_SERVER,
                               MODEL_STREAM_ERROR, SERVICE_UNAVAILABLE})


class WireError(ValueError):
    """Bytes that are not a valid, correctly signed Nova input event."""


# ---------------------------------------------------------------- event-stream framing

_STRING, _BYTES, _TIMESTAMP = 7, 6, 8


def _header(name: str, value: str | bytes | int) -> bytes:
    raw = name.encode()
    head = struct.pack(">B", len(raw)) + raw
    if isinstance(value, str):
        data = value.encode()
        return head + struct.pack(">BH", _STRING, len(data)) + data
    if isinstance(value, bytes):
        return head + struct.pack(">BH", _BYTES, len(value)) + value
    return head + struct.pack(">Bq", _TIMESTAMP, value)


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


class FrameReader:
    """Whole messages out of a byte stream cut anywhere, parsed by botocore."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        self._buffer.add_data(data)
        try:
            return list(self._buffer)
        except ParserError as exc:
            raise WireError(f"malformed event stream: {exc}") from exc


def parse_frame(data: bytes) -> EventStreamMessage:
    reader = FrameReader()
    messages = reader.feed(data)
    if len(messages) != 1:
        raise WireError(f"expected one message, found {len(messages)}")
    return messages[0]


# ---------------------------------------------------------------- SigV4 event chain


def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def check_event_signature(message: EventStreamMessage, *, secret: str, region: str,
                          service: str, prior: bytes) -> bytes:
    """The envelope's ``:chunk-signature`` if it continues the chain from ``prior``
    (SigV4 for event streams: time, scope, prior signature, hash of the encoded
    ``:date`` header, hash of the payload); raises ``WireError`` otherwise."""
    millis = message.headers.get(":date")
    signature = message.headers.get(":chunk-signature")
    if not isinstance(millis, int) or not isinstance(signature, bytes):
        raise WireError("signed event lacks :date or :chunk-signature")
    when = datetime.fromtimestamp(millis // 1000, UTC)
    stamp, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    to_sign = "\n".join((
        "AWS4-HMAC-SHA256-PAYLOAD", stamp, f"{day}/{region}/{service}/aws4_request",
        prior.hex(), hashlib.sha256(_header(":date", millis)).hexdigest(),
        hashlib.sha256(message.payload).hexdigest()))
    expected = hmac.new(_signing_key(secret, day, region, service), to_sign.encode(),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise WireError("event signature does not match the chain")
    return signature


# ---------------------------------------------------------------- Nova events in chunks


def read_input_event(payload: bytes) -> tuple[str, dict[str, Any]]:
    """``(name, body)`` of the Nova event inside a signed envelope's payload: an
    ``event``/``chunk`` message whose JSON ``bytes`` member is the base64 event."""
    message = parse_frame(payload)
    headers = message.headers
    if headers.get(":message-type") != "event" or headers.get(":event-type") != "chunk":
        raise WireError(f"expected a chunk event, got headers {headers!r}")
    try:
        event = json.loads(base64.b64decode(json.loads(message.payload)["bytes"],
                                            validate=True))
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"chunk payload is not base64 JSON: {exc}") from exc
    body = event.get("event") if isinstance(event, dict) else None
    if not isinstance(body, dict) or len(body) != 1:
        raise WireError("expected one event per chunk")
    ((name, fields),) = body.items()
    if not isinstance(fields, dict):
        raise WireError(f"{name} is not an object")
    return name, fields


_CHUNK = {":event-type": "chunk", ":content-type": "application/json",
          ":message-type": "event"}


def output_chunk(name: str, body: dict[str, Any]) -> bytes:
    """A Nova output event framed as the service sends it."""
    inner = base64.b64encode(json.dumps({"event": {name: body}}).encode()).decode()
    return frame(_CHUNK, json.dumps({"bytes": inner}).encode())


def exception_frame(kind: str, message: str) -> bytes:
    """A modelled stream exception (``kind`` one of ``STREAM_EXCEPTIONS``)."""
    if kind not in STREAM_EXCEPTIONS:
        raise ValueError(f"not an exception of the Nova stream: {kind!r}")
    return frame({":exception-type": kind, ":content-type": "application/json",
                  ":message-type": "exception"}, json.dumps({"message": message}).encode())


# ---------------------------------------------------------------- output event bodies


@dataclass(slots=True)
class Output:
    """Builds the model's events for one stream, named as in AWS's Nova Sonic guide."""

    prompt: str
    session_id: str

    def completion_start(self, completion: str) -> bytes:
        return output_chunk("completionStart", {"sessionId": self.session_id,
                                                "promptName": self.prompt,
                                                "completionId": completion})

    def content_start(self, completion: str, content: str, kind: str, role: str,
                      stage: str | None = None) -> bytes:
        body: dict[str, Any] = {"sessionId": self.session_id, "promptName": self.prompt,
                                "completionId": completion, "contentId": content,
                                "type": kind, "role": role}
        if kind == "AUDIO":
            body["audioOutputConfiguration"] = {
                "mediaType": "audio/lpcm", "sampleRateHertz": OUTPUT_RATE,
                "sampleSizeBits": 16, "channelCount": 1, "encoding": "base64"}
        elif kind == "TEXT":
            body["textOutputConfiguration"] = {"mediaType": "text/plain"}
        elif kind == "TOOL":
            body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        if stage is not None:
            body["additionalModelFields"] = json.dumps({"generationStage": stage})
        return output_chunk("contentStart", body)

    def text_output(self, completion: str, content: str, role: str, text: str) -> bytes:
        return output_chunk("textOutput", {
            "sessionId": self.session_id, "promptName": self.prompt,
            "completionId": completion, "contentId": content, "role": role,
            "content": text})

    def audio_output(self, completion: str, content: str, pcm16: bytes) -> bytes:
        return output_chunk("audioOutput", {
            "sessionId": self.session_id, "promptName": self.prompt,
            "completionId": completion, "contentId": content,
            "content": base64.b64encode(pcm16).decode("ascii")})

    def tool_use(self, completion: str, content: str, tool_use_id: str, name: str,
                 arguments: str) -> bytes:
        return output_chunk("toolUse", {
            "sessionId": self.session_id, "promptName": self.prompt,
            "completionId": completion, "contentId": content, "toolUseId": tool_use_id,
            "toolName": name, "content": arguments})

    def content_end(self, completion: str, content: str, kind: str, stop: str) -> bytes:
        return output_chunk("contentEnd", {
            "sessionId": self.session_id, "promptName": self.prompt,
            "completionId": completion, "contentId": content, "type": kind,
            "stopReason": stop})

    def usage(self, completion: str, *, input_speech: int, input_text: int,
              output_speech: int, output_text: int, totals: tuple[int, int]) -> bytes:
        total_in, total_out = totals
        return output_chunk("usageEvent", {
            "sessionId": self.session_id, "promptName": self.prompt,
            "completionId": completion, "totalInputTokens": total_in,
            "totalOutputTokens": total_out, "totalTokens": total_in + total_out,
            "details": {"delta": {
                "input": {"speechTokens": input_speech, "textTokens": input_text},
                "output": {"speechTokens": output_speech, "textTokens": output_text}}}})

    def completion_end(self, completion: str, stop: str) -> bytes:
        return output_chunk("completionEnd", {
            "sessionId": self.session_id, "promptName": self.prompt,
            "completionId": completion, "stopReason": stop})
