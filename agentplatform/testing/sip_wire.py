"""The caller's side of SIP, SDP and RTP, written from the RFCs alone.

The SIP caller simulator builds and reads every message with this module and never
with ``carriers/sip/``: a misreading of the protocol in the server then cannot be
copied into the referee and pass every test. What it follows:

* RFC 3261 §7: a message is a start line, header lines and a body, lines ending in
  CRLF, an empty line before the body. Header names are case-insensitive and have
  compact forms (§7.3.3: ``i`` Call-ID, ``f`` From, ``t`` To, ``v`` Via, ``m``
  Contact, ``l`` Content-Length, ``c`` Content-Type, ``k`` Supported, ``s``
  Subject, ``e`` Content-Encoding; RFC 3515 adds ``r`` Refer-To and RFC 3892 ``b``
  Referred-By, RFC 4028 ``x`` Session-Expires, RFC 6665 ``o`` Event). A header may
  be folded onto following lines that start with whitespace (§7.3.1). Via, From,
  To, Call-ID and CSeq are required in every message (§8.1.1, §8.2.6).
* RFC 4566/3264: an SDP offer lists payload types on ``m=audio``; the answer keeps
  the offer's numbers for the codecs it accepts and names its address in ``c=``.
* RFC 3550 §5.1: the 12-byte RTP header (V=2, P, X, CC, M, PT, sequence,
  timestamp, SSRC), then CSRCs, an optional extension and padding.
* RFC 4733 §2.3: a telephone-event payload is event, E bit, R bit, volume (6 bits)
  and a 16-bit duration in timestamp units.

Parsing is strict: what the RFCs forbid raises ``SipSyntaxError`` naming the fault.
"""

from __future__ import annotations

import re
import secrets
import struct
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7
COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding",
           "r": "refer-to", "b": "referred-by", "x": "session-expires", "o": "event", "u": "allow-events"}
REQUIRED = ("via", "from", "to", "call-id", "cseq")
REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
           481: "Call/Transaction Does Not Exist", 487: "Request Terminated", 501: "Not Implemented"}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


class SipSyntaxError(ValueError):
    """A datagram that is not a well-formed SIP message; the text says what is wrong."""


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


@dataclass(slots=True)
class SipMessage:
    """One request (``method`` set) or response (``status`` set)."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case full names
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (outside quotes and <>)."""
        name = name.lower()
        return [part for key, value in self.headers if key == name for part in split_list(value)]

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.get("cseq").partition(" ")
        return int(number), method.strip()

    @property
    def top_via_branch(self) -> str:
        return param(self.get_all("via")[0], "branch") if self.get_all("via") else ""

    def encode(self) -> bytes:
        start = (f"{self.method} {self.uri} {SIP_VERSION}" if self.is_request
                 else f"{SIP_VERSION} {self.status} {self.reason or REASONS.get(self.status, 'Unknown')}")
        lines = [start] + [f"{_canonical(k)}: {v}" for k, v in self.headers if k != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _canonical(name: str) -> str:
    special = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate"}
    return special.get(name, "-".join(part.capitalize() for part in name.split("-")))


def split_list(value: str) -> list[str]:
    parts, depth, quoted, current = [], 0, False, []
    for char in value:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "<>":
            depth += 1 if char == "<" else -1
        if char == "," and not quoted and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def param(value: str, name: str) -> str:
    """A ``;name=value`` parameter of a header value (after any <uri>), '' if absent."""
    tail = value.rsplit(">", 1)[-1] if ">" in value else value
    for item in tail.split(";")[1:]:
        key, _, val = item.partition("=")
        if key.strip().lower() == name:
            return val.strip() or key.strip()
    return ""


def uri_of(value: str) -> str:
    """The URI in a From/To/Contact/Refer-To value: inside <> or up to the first ';'."""
    if "<" in value:
        inner = value.split("<", 1)[1]
        if ">" not in inner:
            raise SipSyntaxError(f"unclosed <> in {value!r}")
        return inner.split(">", 1)[0].strip()
    return value.split(";", 1)[0].strip()


def uri_host_port(uri: str, default_port: int = 5060) -> tuple[str, int]:
    """(host, port) of a ``sip:`` URI."""
    if not uri.lower().startswith("sip:"):
        raise SipSyntaxError(f"not a sip: URI: {uri!r}")
    hostport = uri[4:].split(";", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    try:
        return host, int(port) if port else default_port
    except ValueError as exc:
        raise SipSyntaxError(f"bad port in {uri!r}") from exc


def uri_user(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""


def parse(data: bytes) -> SipMessage:
    """One SIP message from a datagram; ``SipSyntaxError`` says why it is not one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipSyntaxError("no empty line (CRLF CRLF) after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipSyntaxError("headers are not UTF-8") from exc
    lines = text.split("\r\n")
    message = _start_line(lines[0])
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not message.headers:
                raise SipSyntaxError("continuation line before any header")
            key, value = message.headers[-1]
            message.headers[-1] = (key, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not _TOKEN.match(name):
            raise SipSyntaxError(f"bad header line {line!r}")
        message.headers.append((COMPACT.get(name, name), value.strip()))
    missing = [name for name in REQUIRED if not message.get(name)]
    if missing:
        raise SipSyntaxError(f"missing required header(s) {', '.join(missing)}")
    number, _, method = message.get("cseq").partition(" ")
    if not number.isdigit() or not _TOKEN.match(method.strip() or "?"):
        raise SipSyntaxError(f"bad CSeq {message.get('cseq')!r}")
    if message.is_request and method.strip() != message.method:
        raise SipSyntaxError(f"CSeq method {method.strip()!r} does not match {message.method!r}")
    length = message.get("content-length")
    if length:
        if not length.isdigit():
            raise SipSyntaxError(f"bad Content-Length {length!r}")
        if int(length) > len(body):
            raise SipSyntaxError(f"Content-Length {length} but only {len(body)} body bytes")
        body = body[:int(length)]
    message.body = body
    return message


def _start_line(line: str) -> SipMessage:
    if line.startswith(SIP_VERSION + " "):
        _, code, reason = (line.split(" ", 2) + [""])[:3]
        if not (code.isdigit() and len(code) == 3 and 100 <= int(code) <= 699):
            raise SipSyntaxError(f"bad status line {line!r}")
        return SipMessage(status=int(code), reason=reason)
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != SIP_VERSION or not _TOKEN.match(parts[0]) or ":" not in parts[1]:
        raise SipSyntaxError(f"bad request line {line!r}")
    return SipMessage(method=parts[0], uri=parts[1])


def response_to(request: SipMessage, status: int, *, to_tag: str = "", reason: str = "",
                extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
    """A response copying Via, From, To (with our tag if none), Call-ID, CSeq (§8.2.6.2)."""
    headers = [(k, v) for k, v in request.headers if k == "via"]
    to = request.get("to")
    if to_tag and not param(to, "tag"):
        to = f"{to};tag={to_tag}"
    headers += [("from", request.get("from")), ("to", to), ("call-id", request.get("call-id")),
                ("cseq", request.get("cseq"))]
    return SipMessage(status=status, reason=reason, headers=headers + (extra or []), body=body)


# ------------------------------------------------------------ SDP (RFC 4566, 3264)


@dataclass(slots=True)
class SdpAnswer:
    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str]  # pt -> "PCMU/8000"
    ptime: int | None
    direction: str


def sdp_offer(*, address: str, port: int, codecs: list[tuple[int, str]], session_id: int,
              version: int = 1, ptime: int = 20, direction: str = "sendrecv") -> bytes:
    """An audio offer; ``codecs`` are (payload type, "ENCODING/8000") in preference order."""
    pts = " ".join(str(pt) for pt, _ in codecs)
    lines = ["v=0", f"o=- {session_id} {version} IN IP4 {address}", "s=-", f"c=IN IP4 {address}", "t=0 0",
             f"m=audio {port} RTP/AVP {pts}"]
    for pt, name in codecs:
        lines.append(f"a=rtpmap:{pt} {name}")
        if name.lower().startswith("telephone-event"):
            lines.append(f"a=fmtp:{pt} 0-16")
    lines += [f"a=ptime:{ptime}", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def parse_sdp_answer(body: bytes) -> SdpAnswer:
    """The first audio stream of an SDP body; ``SipSyntaxError`` when one is missing or bad."""
    try:
        lines = body.decode("utf-8").replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError as exc:
        raise SipSyntaxError("SDP is not UTF-8") from exc
    if not lines or lines[0].strip() != "v=0":
        raise SipSyntaxError("SDP does not start with v=0")
    session_addr, media_addr, media, rtpmap, ptime = "", "", None, {}, None
    direction, in_audio = "sendrecv", False
    for line in (raw.strip() for raw in lines if raw.strip()):
        kind, _, value = line.partition("=")
        if kind == "m":
            in_audio = value.startswith("audio ") and media is None
            if in_audio:
                fields = value.split()
                if len(fields) < 4 or not fields[1].split("/")[0].isdigit():
                    raise SipSyntaxError(f"bad m= line {line!r}")
                media = (int(fields[1].split("/")[0]), [int(pt) for pt in fields[3:] if pt.isdigit()])
        elif kind == "c":
            fields = value.split()
            if len(fields) != 3 or fields[:2] != ["IN", "IP4"]:
                raise SipSyntaxError(f"bad c= line {line!r}")
            if media is None:
                session_addr = fields[2]
            elif in_audio:
                media_addr = fields[2]
        elif kind == "a" and (in_audio or media is None):
            name, _, rest = value.partition(":")
            if name == "rtpmap":
                pt, _, enc = rest.partition(" ")
                if pt.isdigit():
                    rtpmap[int(pt)] = enc.strip()
            elif name == "ptime" and rest.strip().isdigit():
                ptime = int(rest)
            elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = name
    if media is None:
        raise SipSyntaxError("SDP has no m=audio line")
    address = media_addr or session_addr
    if not address:
        raise SipSyntaxError("SDP has no c= address for the audio stream")
    return SdpAnswer(address, media[0], media[1], rtpmap, ptime, direction)


# ------------------------------------------------------------ RTP (RFC 3550) and DTMF (RFC 4733)

RTP_HEADER = struct.Struct("!BBHII")


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def encode(self) -> bytes:
        return RTP_HEADER.pack(0x80, (0x80 if self.marker else 0) | self.payload_type, self.sequence & 0xFFFF,
                               self.timestamp & 0xFFFFFFFF, self.ssrc) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < RTP_HEADER.size:
        raise SipSyntaxError(f"RTP packet of {len(data)} bytes is shorter than its header")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise SipSyntaxError(f"RTP version {first >> 6}, not 2")
    offset = RTP_HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if len(data) < offset + 4:
            raise SipSyntaxError("RTP extension header cut short")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20:
        end -= data[-1]
    if offset > end:
        raise SipSyntaxError("RTP header, extension or padding longer than the packet")
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, data[offset:end], bool(second & 0x80))


DTMF_EVENTS = "0123456789*#ABCD"


def dtmf_payload(digit: str, *, end: bool, duration: int, volume: int = 10) -> bytes:
    event = DTMF_EVENTS.index(digit.upper())
    return struct.pack("!BBH", event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


def parse_dtmf(payload: bytes) -> tuple[str, bool, int]:
    """(digit, end, duration) of a telephone-event payload."""
    if len(payload) < 4:
        raise SipSyntaxError("telephone-event payload shorter than 4 bytes")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(DTMF_EVENTS):
        raise SipSyntaxError(f"telephone-event {event} is not a DTMF digit")
    return DTMF_EVENTS[event], bool(flags & 0x80), duration
