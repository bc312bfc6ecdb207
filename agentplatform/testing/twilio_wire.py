"""Twilio's side of Media Streams, written from Twilio's documentation alone.

The caller simulator and the carrier tests build what Twilio sends, and check what
the server sends back, with this module and never with ``carriers/twilio/media.py``:
a misreading of the protocol in the adapter then cannot be copied into the
referee and pass every test. Everything here follows Twilio's "Media Streams —
WebSocket Messages" page (twilio.com/docs/voice/media-streams/websocket-messages):

* Twilio sends JSON text frames: ``connected`` first, then one ``start``, then
  ``media``, ``dtmf``, ``mark`` echoes and finally ``stop``. Every message but
  ``connected`` carries the top-level ``streamSid`` and a ``sequenceNumber``, a
  *string* counting from "1" across all messages of the stream. ``media`` carries
  ``track``, ``chunk`` (a string counting from "1"), ``timestamp`` (a string, ms
  since the stream started) and ``payload`` (base64 of raw μ-law 8 kHz mono).
* The server may send ``media`` (``{"payload": <base64 raw μ-law/8000>}``, no file
  headers), ``mark`` (``{"name": …}``, echoed when the audio before it has played)
  and ``clear`` (drop buffered audio, echo pending marks), each with ``streamSid``.
  Twilio refuses a binary frame (error 31950) and a message with a bad shape, a
  missing or extra field, or another stream's sid (error 31951).

Builders return plain dicts (so a fuzzer can bend them) and ``encode`` makes the
text frame; the encoder is the standard library's, not the adapter's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

FRAME_MS = 20
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz, one byte a sample
ULAW_SILENCE = 0xFF  # μ-law has no zero code; 0xFF is the quietest sample
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
DTMF_DIGITS = "0123456789*#"


def encode(message: dict[str, Any]) -> str:
    """One text frame, compact, as Twilio sends it."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False)  # strict JSON only


def b64(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


# ------------------------------------------------------------ Twilio → server


def connected() -> dict[str, Any]:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(
    *, stream_sid: str, account_sid: str, call_sid: str, sequence_number: int = 1,
    custom_parameters: dict[str, str] | None = None, tracks: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": str(sequence_number),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": list(tracks or ["inbound"]),
            "customParameters": dict(custom_parameters or {}),
            "mediaFormat": dict(MEDIA_FORMAT),
        },
        "streamSid": stream_sid,
    }


def media(
    *, stream_sid: str, sequence_number: int, chunk: int, timestamp: int, payload: bytes,
    track: str = "inbound",
) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": str(sequence_number),
        "media": {"track": track, "chunk": str(chunk), "timestamp": str(timestamp),
                  "payload": b64(payload)},
        "streamSid": stream_sid,
    }


def dtmf(*, stream_sid: str, sequence_number: int, digit: str) -> dict[str, Any]:
    return {"event": "dtmf", "streamSid": stream_sid, "sequenceNumber": str(sequence_number),
            "dtmf": {"track": "inbound_track", "digit": digit}}


def mark(*, stream_sid: str, sequence_number: int, name: str) -> dict[str, Any]:
    return {"event": "mark", "sequenceNumber": str(sequence_number), "streamSid": stream_sid,
            "mark": {"name": name}}


def stop(*, stream_sid: str, sequence_number: int, account_sid: str, call_sid: str) -> dict[str, Any]:
    return {"event": "stop", "sequenceNumber": str(sequence_number),
            "stop": {"accountSid": account_sid, "callSid": call_sid}, "streamSid": stream_sid}


# ------------------------------------------------------------ server → Twilio


class ProtocolViolation(ValueError):
    """A frame Twilio would refuse, with Twilio's error code (31950 or 31951)."""

    def __init__(self, code: int, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code} {detail}")


@dataclass(frozen=True, slots=True)
class ServerMedia:
    stream_sid: str
    payload: bytes  # raw μ-law 8 kHz


@dataclass(frozen=True, slots=True)
class ServerMark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class ServerClear:
    stream_sid: str


ServerMessage = ServerMedia | ServerMark | ServerClear

# The fields of each message a server may send, exactly (extra or missing: 31951).
SERVER_FIELDS: dict[str, set[str]] = {
    "media": {"event", "streamSid", "media"},
    "mark": {"event", "streamSid", "mark"},
    "clear": {"event", "streamSid"},
}


def _invalid(detail: str) -> ProtocolViolation:
    return ProtocolViolation(31951, detail)


def _exactly(value: Any, fields: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not an object")
    if set(value) != fields:
        raise _invalid(f"{where} has fields {sorted(value)}, expected {sorted(fields)}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{where} is {type(value).__name__}, expected a string")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json would take it; Twilio would not


def read_server_frame(frame: str | bytes) -> ServerMessage:
    """Check one frame the server sent as strictly as Twilio does; ``ProtocolViolation`` if not."""
    if isinstance(frame, bytes):
        raise ProtocolViolation(31950, "binary frame")
    try:
        message = json.loads(frame, parse_constant=_not_json)
    except ValueError as exc:
        raise _invalid(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise _invalid("not a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or event not in SERVER_FIELDS:
        raise _invalid(f"event {event!r} is not one a server may send")
    _exactly(message, SERVER_FIELDS[event], event)
    stream_sid = _string(message["streamSid"], "streamSid")
    if event == "media":
        body = _exactly(message["media"], {"payload"}, "media")
        text = _string(body["payload"], "media.payload")
        try:
            payload = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _invalid(f"media.payload is not base64: {exc}") from exc
        return ServerMedia(stream_sid, payload)
    if event == "mark":
        body = _exactly(message["mark"], {"name"}, "mark")
        return ServerMark(stream_sid, _string(body["name"], "mark.name"))
    return ServerClear(stream_sid)


__all__ = [
    "DTMF_DIGITS", "FRAME_BYTES", "FRAME_MS", "MEDIA_FORMAT", "ULAW_SILENCE", "ProtocolViolation",
    "SERVER_FIELDS", "ServerClear", "ServerMark", "ServerMedia", "ServerMessage", "b64",
    "connected", "dtmf", "encode", "mark", "media", "read_server_frame", "start", "stop",
]
