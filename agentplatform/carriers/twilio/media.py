"""Twilio Media Streams messages: pure parse and build, no sockets.

Every message is a JSON text frame with an ``event`` field. Twilio sends
``connected``, ``start``, ``media``, ``mark``, ``dtmf`` and ``stop``; we send
``media``, ``mark`` and ``clear``. Anything else, or a message with a field
missing or of the wrong type, is a ``MalformedMessage`` carrying a
``MalformedKind`` so the stream can count it by kind and carry on: one bad frame
must never end a phone call. Fields are checked as Twilio documents them
(numbers arrive as decimal strings; a DTMF digit is one key), so nothing odd
travels on into the bridge or, as text, to the model.

The Twilio side of the protocol (building what Twilio sends, checking what we
send) is deliberately not here: the simulator writes its own from Twilio's
documentation (``testing/twilio_wire.py``), so the two readings referee each other.

The outbound media builder runs for every 20 ms chunk of every call, so it skips
the JSON encoder: the prefix for a stream id is rendered once and cached, and the
payload is a plain base64 string that needs no escaping.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson

from agentplatform.errors import CarrierError

# μ-law has no zero code: 0xFF is the quietest sample, what a silent line carries.
ULAW_SILENCE = 0xFF
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law, the size Twilio sends
FRAME_MS = 20
# Twilio's frames are a few hundred characters (a start with its parameters, a
# 20 ms media chunk). Anything far larger is refused unread, so parsing a frame
# stays microseconds on the event loop whatever a peer sends.
MAX_FRAME_CHARS = 64 * 1024
_MAX_NUMBER = 2**53  # sequence numbers, chunks, ms: far beyond any call, still exact
DTMF_KEYS = frozenset("0123456789*#")  # the keys Twilio reports


class MalformedKind(StrEnum):
    """Why an inbound frame was skipped: the ``kind`` label of the malformed-message
    counter, and the key of ``TwilioCallAudio.malformed_counts``."""

    BAD_JSON = "bad_json"  # not JSON, or not a JSON object
    UNKNOWN_EVENT = "unknown_event"  # no event, or one Twilio does not send
    BAD_SHAPE = "bad_shape"  # a field missing, of the wrong type, or out of range
    BAD_PAYLOAD = "bad_payload"  # media payload missing, not a string, or not base64
    OVERSIZE = "oversize"  # far larger than any Twilio frame; not parsed
    BINARY = "binary"  # a binary frame: Twilio sends text only
    WRONG_STREAM = "wrong_stream"  # another stream's streamSid
    OUT_OF_ORDER = "out_of_order"  # sequenceNumber not after the last one: a repeat or replay
    UNEXPECTED = "unexpected"  # valid, but not now: media before start, a second start


class MalformedMessage(CarrierError):
    """One inbound frame we cannot use; ``kind`` names why, ``detail`` what."""

    def __init__(self, kind: MalformedKind, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


# ------------------------------------------------------------ Twilio → us


@dataclass(slots=True)
class MediaFormat:
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(slots=True)
class Start:
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: list[str]
    custom_parameters: dict[str, str]
    media_format: MediaFormat
    sequence_number: int = 0


@dataclass(slots=True)
class Media:
    stream_sid: str
    track: str
    chunk: int
    timestamp: int  # ms since the stream started, Twilio's media clock
    payload: bytes  # raw μ-law
    sequence_number: int = 0


@dataclass(slots=True)
class Mark:
    stream_sid: str
    name: str
    sequence_number: int = 0


@dataclass(slots=True)
class DtmfDigit:
    stream_sid: str
    track: str
    digit: str
    sequence_number: int = 0


@dataclass(slots=True)
class Stop:
    stream_sid: str
    account_sid: str
    call_sid: str
    sequence_number: int = 0


Inbound = Connected | Start | Media | Mark | DtmfDigit | Stop

_MISSING = object()


def _shape(detail: str) -> MalformedMessage:
    return MalformedMessage(MalformedKind.BAD_SHAPE, detail)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _shape(f"{name} is not an object")
    return value


def _text(body: dict[str, Any], key: str, default: Any = _MISSING) -> str:
    value = body.get(key, default)
    if value is _MISSING:
        raise _shape(f"{key} is missing")
    if not isinstance(value, str):
        raise _shape(f"{key} is {type(value).__name__}, not a string")
    return value


def _number(body: dict[str, Any], key: str, default: Any = _MISSING) -> int:
    """Twilio sends counters and clocks as decimal strings; a JSON integer is taken too."""
    value = body.get(key, default)
    if value is _MISSING:
        raise _shape(f"{key} is missing")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _shape(f"{key} is not a decimal number: {str(value)[:40]!r}")
    if not 0 <= number <= _MAX_NUMBER:
        raise _shape(f"{key} is out of range")
    return number


def _seq(msg: dict[str, Any]) -> int:
    """0 when absent: an unnumbered frame is not checked for order."""
    return _number(msg, "sequenceNumber", 0)


def _b64(body: dict[str, Any]) -> bytes:
    value = body.get("payload")
    if not isinstance(value, str):
        raise MalformedMessage(MalformedKind.BAD_PAYLOAD, "payload is not a string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage(MalformedKind.BAD_PAYLOAD, str(exc)) from exc


def _parse_connected(msg: dict[str, Any]) -> Connected:
    return Connected(protocol=str(msg.get("protocol", "")), version=str(msg.get("version", "")))


def _parse_start(msg: dict[str, Any]) -> Start:
    body = _object(msg.get("start"), "start")
    fmt = _object(body.get("mediaFormat") or {}, "mediaFormat")
    params = _object(body.get("customParameters") or {}, "customParameters")
    if not all(isinstance(v, str) for v in params.values()):
        raise _shape("customParameters has a value that is not a string")
    tracks = body.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise _shape("tracks is not a list of strings")
    return Start(
        stream_sid=_text(body, "streamSid") if "streamSid" in body else _text(msg, "streamSid"),
        account_sid=_text(body, "accountSid"),
        call_sid=_text(body, "callSid"),
        tracks=list(tracks),
        custom_parameters=dict(params),
        media_format=MediaFormat(
            encoding=_text(fmt, "encoding", "audio/x-mulaw"),
            sample_rate=_number(fmt, "sampleRate", 8000),
            channels=_number(fmt, "channels", 1),
        ),
        sequence_number=_seq(msg),
    )


def _fast_number(value: Any) -> int:
    """A counter as Twilio sends it (a short decimal string), or a JSON integer, in
    range; -1 for anything else, which the checked parse then names."""
    if type(value) is str:
        if len(value) <= 16 and value.isdigit() and value.isascii():
            number = int(value)
            return number if number <= _MAX_NUMBER else -1
        return -1
    if type(value) is int:
        return value if 0 <= value <= _MAX_NUMBER else -1
    return -1


def _parse_media(msg: dict[str, Any]) -> Media:
    """Fifty a second per call: the usual frame takes the short way, with the same
    checks; anything it does not pass goes through ``_parse_media_checked``, which
    says what is wrong."""
    body = msg.get("media")
    stream_sid = msg.get("streamSid")
    if type(body) is dict and type(stream_sid) is str:
        track = body.get("track", "inbound")
        chunk = _fast_number(body.get("chunk", 0))
        timestamp = _fast_number(body.get("timestamp"))
        seq = _fast_number(msg.get("sequenceNumber", 0))
        payload = body.get("payload")
        if (type(track) is str and type(payload) is str
                and chunk >= 0 and timestamp >= 0 and seq >= 0):
            try:
                audio = binascii.a2b_base64(payload, strict_mode=True)
            except (binascii.Error, ValueError) as exc:
                raise MalformedMessage(MalformedKind.BAD_PAYLOAD, str(exc)) from exc
            return Media(stream_sid, track, chunk, timestamp, audio, seq)
    return _parse_media_checked(msg)


def _parse_media_checked(msg: dict[str, Any]) -> Media:
    body = _object(msg.get("media"), "media")
    return Media(
        stream_sid=_text(msg, "streamSid"),
        track=_text(body, "track", "inbound"),
        chunk=_number(body, "chunk", 0),
        timestamp=_number(body, "timestamp"),
        sequence_number=_seq(msg),
        payload=_b64(body),
    )


def _parse_mark(msg: dict[str, Any]) -> Mark:
    """An echo of each mark we send, fifty a second while the agent speaks: the short
    way as for media, else ``_parse_mark_checked``."""
    body = msg.get("mark")
    stream_sid = msg.get("streamSid")
    if type(body) is dict and type(stream_sid) is str:
        name = body.get("name")
        seq = _fast_number(msg.get("sequenceNumber", 0))
        if type(name) is str and seq >= 0:
            return Mark(stream_sid, name, seq)
    return _parse_mark_checked(msg)


def _parse_mark_checked(msg: dict[str, Any]) -> Mark:
    body = _object(msg.get("mark"), "mark")
    return Mark(stream_sid=_text(msg, "streamSid"), name=_text(body, "name"),
                sequence_number=_seq(msg))


def _parse_dtmf(msg: dict[str, Any]) -> DtmfDigit:
    body = _object(msg.get("dtmf"), "dtmf")
    digit = _text(body, "digit")
    if digit not in DTMF_KEYS:  # one key of the pad, never free text for the model
        raise _shape(f"dtmf digit {digit[:20]!r} is not a key")
    return DtmfDigit(stream_sid=_text(msg, "streamSid"), track=_text(body, "track", ""),
                     digit=digit, sequence_number=_seq(msg))


def _parse_stop(msg: dict[str, Any]) -> Stop:
    body = _object(msg.get("stop") or {}, "stop")
    return Stop(stream_sid=_text(msg, "streamSid"), account_sid=_text(body, "accountSid", ""),
                call_sid=_text(body, "callSid", ""), sequence_number=_seq(msg))


_INBOUND_PARSERS: dict[str, Callable[[dict[str, Any]], Inbound]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "mark": _parse_mark,
    "dtmf": _parse_dtmf,
    "stop": _parse_stop,
}


def parse_message(text: str | bytes) -> Inbound:
    """Parse one frame Twilio sent us; raise ``MalformedMessage`` if we can't."""
    if len(text) > MAX_FRAME_CHARS:
        raise MalformedMessage(MalformedKind.OVERSIZE, f"{len(text)} characters")
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(MalformedKind.BAD_JSON, str(exc)) from exc
    if not isinstance(msg, dict):
        raise MalformedMessage(MalformedKind.BAD_JSON, "not a JSON object")
    event = msg.get("event")
    parser = _INBOUND_PARSERS.get(event) if isinstance(event, str) else None
    if parser is None:
        raise MalformedMessage(MalformedKind.UNKNOWN_EVENT, f"event {str(event)[:40]!r}")
    try:
        return parser(msg)
    except MalformedMessage:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise _shape(f"{event}: {exc!r}") from exc


# ------------------------------------------------------------ us → Twilio


@lru_cache(maxsize=4096)
def _media_prefix(stream_sid: str) -> str:
    # orjson quotes the id, so an odd stream id cannot break the frame.
    return '{"event":"media","streamSid":' + orjson.dumps(stream_sid).decode() + ',"media":{"payload":"'


_MEDIA_SUFFIX = '"}}'


def media_message(stream_sid: str, ulaw: bytes) -> str:
    """One outbound audio chunk (raw μ-law 8 kHz, no headers) as a text frame."""
    return _media_prefix(stream_sid) + binascii.b2a_base64(ulaw, newline=False).decode("ascii") + _MEDIA_SUFFIX


@lru_cache(maxsize=4096)
def _mark_prefix(stream_sid: str) -> str:
    return '{"event":"mark","streamSid":' + orjson.dumps(stream_sid).decode() + ',"mark":{"name":'


def mark_message(stream_sid: str, name: str) -> str:
    """Ask Twilio to echo ``name`` once the audio sent before it has played."""
    return _mark_prefix(stream_sid) + orjson.dumps(name).decode() + "}}"


def clear_message(stream_sid: str) -> str:
    """Drop everything Twilio has buffered for playback; pending marks come back."""
    return orjson.dumps({"event": "clear", "streamSid": stream_sid}).decode()


__all__ = [
    "FRAME_BYTES", "FRAME_MS", "MAX_FRAME_CHARS", "ULAW_SILENCE", "MalformedKind", "MalformedMessage",
    "MediaFormat", "Connected", "Start", "Media", "Mark", "DtmfDigit", "Stop", "Inbound",
    "parse_message", "media_message", "mark_message", "clear_message",
]
