"""Twilio Media Streams messages: pure parse and build, no sockets.

Every message is a JSON text frame with an ``event`` field. Twilio sends
``connected``, ``start``, ``media``, ``mark``, ``dtmf`` and ``stop``; we send
``media``, ``mark`` and ``clear``. Anything else, or a message missing a field,
is a ``MalformedMessage`` carrying a ``kind`` so the stream can count it by kind
and carry on: one bad frame must never end a phone call.

The caller simulator needs the other direction (build what Twilio sends, parse
what we send), so those functions live here too, in the second half of the file:
one wire protocol, one module.

The outbound media builder runs for every 20 ms chunk of every call, so it skips
the JSON encoder: the prefix for a stream id is rendered once and cached, and the
payload is a plain base64 string that needs no escaping.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from agentplatform.errors import CarrierError

# μ-law has no zero code: 0xFF is the quietest sample, what a silent line carries.
ULAW_SILENCE = 0xFF
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law, the size Twilio sends
FRAME_MS = 20


class MalformedMessage(CarrierError):
    """One inbound frame we cannot use. ``kind`` names why, for per-kind counts:
    ``json``, ``shape``, ``base64``, ``unknown_event`` (and, from the stream,
    ``binary``, ``stream_sid``, ``unexpected``)."""

    def __init__(self, kind: str, detail: str) -> None:
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


def _seq(msg: dict[str, Any]) -> int:
    return int(msg.get("sequenceNumber", 0))


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise MalformedMessage("base64", "payload is not a string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage("base64", str(exc)) from exc


def _parse_connected(msg: dict[str, Any]) -> Connected:
    return Connected(protocol=str(msg.get("protocol", "")), version=str(msg.get("version", "")))


def _parse_start(msg: dict[str, Any]) -> Start:
    body = msg["start"]
    fmt = body.get("mediaFormat") or {}
    params = body.get("customParameters") or {}
    if not isinstance(params, dict):
        raise TypeError("customParameters is not an object")
    return Start(
        stream_sid=str(body.get("streamSid") or msg["streamSid"]),
        account_sid=str(body["accountSid"]),
        call_sid=str(body["callSid"]),
        tracks=[str(t) for t in body.get("tracks", ["inbound"])],
        custom_parameters={str(k): str(v) for k, v in params.items()},
        media_format=MediaFormat(
            encoding=str(fmt.get("encoding", "audio/x-mulaw")),
            sample_rate=int(fmt.get("sampleRate", 8000)),
            channels=int(fmt.get("channels", 1)),
        ),
        sequence_number=_seq(msg),
    )


def _parse_media(msg: dict[str, Any]) -> Media:
    body = msg["media"]
    return Media(
        stream_sid=str(msg["streamSid"]),
        track=str(body.get("track", "inbound")),
        chunk=int(body.get("chunk", 0)),
        timestamp=int(body["timestamp"]),
        payload=_b64(body["payload"]),
        sequence_number=_seq(msg),
    )


def _parse_mark(msg: dict[str, Any]) -> Mark:
    return Mark(stream_sid=str(msg["streamSid"]), name=str(msg["mark"]["name"]),
                sequence_number=_seq(msg))


def _parse_dtmf(msg: dict[str, Any]) -> DtmfDigit:
    body = msg["dtmf"]
    return DtmfDigit(stream_sid=str(msg["streamSid"]), track=str(body.get("track", "")),
                     digit=str(body["digit"]), sequence_number=_seq(msg))


def _parse_stop(msg: dict[str, Any]) -> Stop:
    body = msg.get("stop") or {}
    return Stop(stream_sid=str(msg["streamSid"]), account_sid=str(body.get("accountSid", "")),
                call_sid=str(body.get("callSid", "")), sequence_number=_seq(msg))


_INBOUND_PARSERS: dict[str, Callable[[dict[str, Any]], Inbound]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "mark": _parse_mark,
    "dtmf": _parse_dtmf,
    "stop": _parse_stop,
}


def _load(text: str | bytes) -> dict[str, Any]:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage("json", str(exc)) from exc
    if not isinstance(msg, dict):
        raise MalformedMessage("json", "not a JSON object")
    return msg


def _dispatch(msg: dict[str, Any], parsers: dict[str, Callable[[dict[str, Any]], Any]]) -> Any:
    event = msg.get("event")
    parser = parsers.get(event) if isinstance(event, str) else None
    if parser is None:
        raise MalformedMessage("unknown_event", f"event {event!r}")
    try:
        return parser(msg)
    except MalformedMessage:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedMessage("shape", f"{event}: {exc!r}") from exc


def parse_message(text: str | bytes) -> Inbound:
    """Parse one frame Twilio sent us; raise ``MalformedMessage`` if we can't."""
    return _dispatch(_load(text), _INBOUND_PARSERS)


# ------------------------------------------------------------ us → Twilio


@lru_cache(maxsize=4096)
def _media_prefix(stream_sid: str) -> str:
    # orjson quotes the id, so an odd stream id cannot break the frame.
    return '{"event":"media","streamSid":' + orjson.dumps(stream_sid).decode() + ',"media":{"payload":"'


_MEDIA_SUFFIX = '"}}'


def media_message(stream_sid: str, ulaw: bytes) -> str:
    """One outbound audio chunk (raw μ-law 8 kHz, no headers) as a text frame."""
    return _media_prefix(stream_sid) + binascii.b2a_base64(ulaw, newline=False).decode("ascii") + _MEDIA_SUFFIX


def mark_message(stream_sid: str, name: str) -> str:
    """Ask Twilio to echo ``name`` once the audio sent before it has played."""
    return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).decode()


def clear_message(stream_sid: str) -> str:
    """Drop everything Twilio has buffered for playback; pending marks come back."""
    return orjson.dumps({"event": "clear", "streamSid": stream_sid}).decode()


# ------------------------------------------------ the Twilio side (simulator)
#
# What a caller simulator needs: build the frames Twilio sends and parse the
# frames we send, checking them as strictly as Twilio does (error 31951:
# bad shape, extra or missing field, wrong stream id).


@dataclass(slots=True)
class OutboundMedia:
    stream_sid: str
    payload: bytes


@dataclass(slots=True)
class OutboundMark:
    stream_sid: str
    name: str


@dataclass(slots=True)
class OutboundClear:
    stream_sid: str


Outbound = OutboundMedia | OutboundMark | OutboundClear


def _exact_keys(msg: dict[str, Any], keys: set[str]) -> None:
    if set(msg) != keys:
        raise ValueError(f"fields {sorted(msg)} != {sorted(keys)}")


def _parse_out_media(msg: dict[str, Any]) -> OutboundMedia:
    _exact_keys(msg, {"event", "streamSid", "media"})
    _exact_keys(msg["media"], {"payload"})
    return OutboundMedia(stream_sid=str(msg["streamSid"]), payload=_b64(msg["media"]["payload"]))


def _parse_out_mark(msg: dict[str, Any]) -> OutboundMark:
    _exact_keys(msg, {"event", "streamSid", "mark"})
    _exact_keys(msg["mark"], {"name"})
    return OutboundMark(stream_sid=str(msg["streamSid"]), name=str(msg["mark"]["name"]))


def _parse_out_clear(msg: dict[str, Any]) -> OutboundClear:
    _exact_keys(msg, {"event", "streamSid"})
    return OutboundClear(stream_sid=str(msg["streamSid"]))


_OUTBOUND_PARSERS: dict[str, Callable[[dict[str, Any]], Outbound]] = {
    "media": _parse_out_media,
    "mark": _parse_out_mark,
    "clear": _parse_out_clear,
}


def parse_outbound(text: str | bytes) -> Outbound:
    """Parse one frame we sent to Twilio, as strictly as Twilio checks it."""
    return _dispatch(_load(text), _OUTBOUND_PARSERS)


def _dumps(msg: dict[str, Any]) -> str:
    return orjson.dumps(msg).decode()


def connected_message() -> str:
    return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    *, stream_sid: str, account_sid: str, call_sid: str, custom_parameters: dict[str, str],
    sequence_number: int = 1, tracks: list[str] | None = None,
) -> str:
    return _dumps({
        "event": "start",
        "sequenceNumber": str(sequence_number),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": tracks or ["inbound"],
            "customParameters": custom_parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": stream_sid,
    })


def inbound_media_message(
    *, stream_sid: str, sequence_number: int, chunk: int, timestamp: int, ulaw: bytes,
) -> str:
    return _dumps({
        "event": "media",
        "sequenceNumber": str(sequence_number),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(timestamp),
            "payload": binascii.b2a_base64(ulaw, newline=False).decode("ascii"),
        },
        "streamSid": stream_sid,
    })


def inbound_mark_message(*, stream_sid: str, sequence_number: int, name: str) -> str:
    return _dumps({"event": "mark", "sequenceNumber": str(sequence_number),
                   "streamSid": stream_sid, "mark": {"name": name}})


def dtmf_message(*, stream_sid: str, sequence_number: int, digit: str) -> str:
    return _dumps({"event": "dtmf", "streamSid": stream_sid, "sequenceNumber": str(sequence_number),
                   "dtmf": {"track": "inbound_track", "digit": digit}})


def stop_message(*, stream_sid: str, sequence_number: int, account_sid: str, call_sid: str) -> str:
    return _dumps({"event": "stop", "sequenceNumber": str(sequence_number),
                   "stop": {"accountSid": account_sid, "callSid": call_sid},
                   "streamSid": stream_sid})


__all__ = [
    "FRAME_BYTES", "FRAME_MS", "ULAW_SILENCE", "MalformedMessage",
    "MediaFormat", "Connected", "Start", "Media", "Mark", "DtmfDigit", "Stop", "Inbound",
    "parse_message", "media_message", "mark_message", "clear_message",
    "OutboundMedia", "OutboundMark", "OutboundClear", "Outbound", "parse_outbound",
    "connected_message", "start_message", "inbound_media_message", "inbound_mark_message",
    "dtmf_message", "stop_message",
]
