"""SDP offer/answer for one G.711 audio stream (RFC 4566, RFC 3264). Pure.

We answer an offer with PCMU or PCMA at 8 kHz, keeping the payload-type numbers the
offer used (a dynamic number for PCMU is legal and some trunks use one), with
RFC 4733 ``telephone-event`` on the number the offer gave it (101 is a habit, not a
rule), 20 ms packets, and a direction that mirrors the offer's (a caller on hold
sends ``sendonly``; we answer ``recvonly`` and stop sending). Only the first usable
audio stream is taken; every other m-line is declined with port 0 in its place, as
RFC 3264 6 requires the answer to keep the offer's m-lines in order.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

CLOCK_RATE = 8000
PTIME_MS = 20
DTMF_EVENTS = "0-16"  # digits 0-9, *, #, A-D, flash (RFC 4733 3.2)
STATIC_TYPES = {0: "PCMU", 8: "PCMA"}  # RFC 3551 table 4: no rtpmap needed
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
_LINE_TYPES = frozenset("vosiuepcbtrzkam")
MAX_SDP = 16_384  # far more than any offer of one call


class SdpError(ValueError):
    """An offer we cannot answer; ``status`` is the SIP response to send: 488 when
    nothing in it is acceptable, 400 when it is not SDP."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {detail}")


@dataclass(frozen=True, slots=True)
class Codec:
    payload_type: int
    name: str  # "PCMU" | "PCMA"; always 8000 Hz mono


@dataclass(slots=True)
class Media:
    """One m= section as offered."""

    kind: str  # audio, video, ...
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # pt → (NAME, clock, channels)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str | None = None


@dataclass(slots=True)
class Session:
    origin: list[str]
    connection: str | None = None
    direction: str | None = None
    ptime: int | None = None
    media: list[Media] = field(default_factory=list)


@dataclass(slots=True)
class Answer:
    sdp: bytes  # our answer, ready for the 200's body
    codec: Codec
    dtmf_payload_type: int | None
    remote_rtp: tuple[str, int]  # where the offer asks us to send RTP
    ptime_ms: int  # the offer's packet time (20 when it names none); we always send 20
    direction: str  # the remote's direction: sendrecv|sendonly|recvonly|inactive


# ------------------------------------------------------------------ parsing


def _int(text: str, what: str, low: int, high: int) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 10 and low <= int(text) <= high):
        raise SdpError(400, f"{what} {text[:20]!r}")
    return int(text)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(400, f"c={value[:60]}")
    address = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(400, f"c= address {address[:60]!r} is not an IP address") from None
    return address


def parse_sdp(data: bytes) -> Session:
    """The parts of a session description an audio answer depends on; SdpError(400)
    when it is not SDP."""
    if len(data) > MAX_SDP:
        raise SdpError(400, f"{len(data)} bytes of SDP")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError(400, "SDP is not UTF-8") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError(400, "SDP does not start with v=0")
    session: Session | None = None
    media: Media | None = None
    for line in lines[1:]:
        kind, eq, value = line[:1], line[1:2], line[2:]
        if eq != "=" or kind not in _LINE_TYPES:
            raise SdpError(400, f"not an SDP line: {line[:60]!r}")
        if kind == "o":
            if session is not None or len(value.split()) != 6:
                raise SdpError(400, f"o={value[:60]}")
            session = Session(value.split())
            continue
        if session is None:
            raise SdpError(400, f"{kind}= before o=")
        if kind == "m":
            media = _media_line(value)
            session.media.append(media)
        elif kind == "c":
            if media is None:
                session.connection = _connection(value)
            else:
                media.connection = _connection(value)
        elif kind == "a":
            _attribute(value, session, media)
    if session is None or not session.media:
        raise SdpError(400, "no o= or no m= line")
    return session


def _media_line(value: str) -> Media:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(400, f"m={value[:60]}")
    port = _int(parts[1].split("/")[0], "m= port", 0, 65535)
    proto, formats = parts[2], parts[3:]
    if proto.upper().startswith("RTP/"):
        for fmt in formats:
            _int(fmt, "payload type", 0, 127)
    return Media(parts[0], port, proto, formats)


def _attribute(value: str, session: Session, media: Media | None) -> None:
    name, _, rest = value.partition(":")
    if name in DIRECTIONS:
        if media is None:
            session.direction = name
        else:
            media.direction = name
    elif name == "ptime":
        ptime = _int(rest.strip().split(".")[0], "ptime", 1, 1000)  # "20.0" seen in the wild
        if media is None:
            session.ptime = ptime
        else:
            media.ptime = ptime
    elif name == "rtpmap" and media is not None:
        number, _, encoding = rest.strip().partition(" ")
        pt = _int(number, "rtpmap payload type", 0, 127)
        enc_name, _, clock_and_channels = encoding.strip().partition("/")
        clock, _, channels = clock_and_channels.partition("/")
        if not enc_name:
            raise SdpError(400, f"a=rtpmap:{rest[:60]}")
        media.rtpmap[pt] = (enc_name.upper(), _int(clock, "clock rate", 1, 10**7),
                            _int(channels, "channels", 1, 255) if channels else 1)
    elif name == "fmtp" and media is not None:
        number, _, params = rest.strip().partition(" ")
        if number.isdigit() and number.isascii() and len(number) <= 3:
            media.fmtp[int(number)] = params.strip()


# ------------------------------------------------------------------ answering


def _codec_of(media: Media, fmt: str) -> str | None:
    pt = int(fmt)
    if pt in media.rtpmap:
        name, clock, channels = media.rtpmap[pt]
        return name if clock == CLOCK_RATE and channels == 1 else None
    return STATIC_TYPES.get(pt)


def _choose(media: Media, prefer: tuple[str, ...]) -> tuple[Codec | None, int | None]:
    named = [(fmt, _codec_of(media, fmt)) for fmt in media.formats]
    codec = next((Codec(int(fmt), want) for want in prefer for fmt, name in named if name == want), None)
    dtmf = next((int(fmt) for fmt, name in named if name == "TELEPHONE-EVENT"), None)
    return codec, dtmf


def _remote_direction(session: Session, media: Media, address: str) -> str:
    direction = media.direction or session.direction or "sendrecv"
    if ipaddress.ip_address(address).is_unspecified:
        # RFC 2543 hold: c=0.0.0.0. Never send there (it would reach our own host).
        direction = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
    return direction


def _usable(media: Media) -> bool:
    return media.kind == "audio" and media.port != 0 and media.proto.upper() == "RTP/AVP"


def answer_offer(offer: bytes, *, local_address: str, local_port: int, session_id: int,
                 version: int, prefer: tuple[str, ...] = ("PCMU", "PCMA")) -> Answer:
    """Our answer to ``offer``; SdpError(488) when no audio stream has PCMU or PCMA
    over plain RTP/AVP, SdpError(400) when the offer is not SDP."""
    session = parse_sdp(offer)
    chosen: tuple[int, Media, Codec, int | None] | None = None
    for index, media in enumerate(session.media):
        if not _usable(media):
            continue
        codec, dtmf = _choose(media, prefer)
        if codec is not None:
            chosen = (index, media, codec, dtmf)
            break
    if chosen is None:
        offered = "; ".join(f"{m.kind} {m.port} {m.proto} {' '.join(m.formats)}" for m in session.media)
        raise SdpError(488, f"no PCMU or PCMA audio over RTP/AVP in: {offered[:200]}")
    index, media, codec, dtmf = chosen
    address = media.connection or session.connection
    if address is None:
        raise SdpError(400, "no c= line for the audio stream")
    direction = _remote_direction(session, media, address)
    lines = _session_lines(local_address, session_id, version)
    for i, other in enumerate(session.media):
        if i == index:
            lines += _audio_lines(local_port, codec, dtmf, PTIME_MS, MIRROR[direction])
        else:
            lines.append(f"m={other.kind} 0 {other.proto} {' '.join(other.formats)}")
    return Answer(sdp=_join(lines), codec=codec, dtmf_payload_type=dtmf,
                  remote_rtp=(address, media.port), ptime_ms=media.ptime or session.ptime or PTIME_MS,
                  direction=direction)


def _session_lines(address: str, session_id: int, version: int) -> list[str]:
    family = "IP6" if ":" in address else "IP4"
    return ["v=0", f"o=- {session_id} {version} IN {family} {address}", "s=-",
            f"c=IN {family} {address}", "t=0 0"]


def _audio_lines(port: int, codec: Codec, dtmf: int | None, ptime: int, direction: str) -> list[str]:
    formats = [codec.payload_type] + ([dtmf] if dtmf is not None else [])
    lines = [f"m=audio {port} RTP/AVP {' '.join(map(str, formats))}",
             f"a=rtpmap:{codec.payload_type} {codec.name}/{CLOCK_RATE}"]
    if dtmf is not None:
        lines += [f"a=rtpmap:{dtmf} telephone-event/{CLOCK_RATE}", f"a=fmtp:{dtmf} {DTMF_EVENTS}"]
    return lines + [f"a=ptime:{ptime}", f"a={direction}"]


def _join(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# ------------------------------------------------------------------ our own offers


def make_offer(*, local_address: str, local_port: int, session_id: int, version: int,
               codecs: tuple[Codec, ...] = (Codec(0, "PCMU"), Codec(8, "PCMA")),
               dtmf_payload_type: int | None = 101, direction: str = "sendrecv") -> bytes:
    """An offer for the caller simulator and our re-offers: the given codecs in
    order of preference, telephone-event, ptime 20."""
    if not codecs or direction not in DIRECTIONS:
        raise ValueError("an offer needs a codec and a direction from " + ", ".join(DIRECTIONS))
    formats = [c.payload_type for c in codecs] + ([dtmf_payload_type] if dtmf_payload_type is not None else [])
    lines = _session_lines(local_address, session_id, version)
    lines.append(f"m=audio {local_port} RTP/AVP {' '.join(map(str, formats))}")
    lines += [f"a=rtpmap:{c.payload_type} {c.name}/{CLOCK_RATE}" for c in codecs]
    if dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{dtmf_payload_type} telephone-event/{CLOCK_RATE}",
                  f"a=fmtp:{dtmf_payload_type} {DTMF_EVENTS}"]
    return _join(lines + [f"a=ptime:{PTIME_MS}", f"a={direction}"])


def read_answer(answer: bytes) -> Answer:
    """What an answer to our offer settled (for the caller simulator): the first
    PCMU/PCMA format of its first usable audio stream. SdpError as for offers."""
    session = parse_sdp(answer)
    for media in session.media:
        if not _usable(media):
            continue
        codec, dtmf = _choose(media, tuple(name for fmt in media.formats
                                           if (name := _codec_of(media, fmt)) in ("PCMU", "PCMA")))
        address = media.connection or session.connection
        if codec is None or address is None:
            continue
        return Answer(sdp=answer, codec=codec, dtmf_payload_type=dtmf, remote_rtp=(address, media.port),
                      ptime_ms=media.ptime or session.ptime or PTIME_MS,
                      direction=_remote_direction(session, media, address))
    raise SdpError(488, "the answer accepted no PCMU or PCMA audio stream")
