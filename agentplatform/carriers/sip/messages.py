"""SIP messages (RFC 3261): parse one UDP datagram, build one, answer a request.

Pure functions, no I/O. The parser is strict about what a call depends on (the
start line, the mandatory headers, CSeq, Content-Length, the addresses we answer
and route by) and tolerant where real trunks are sloppy (bare LF line ends, compact
header names, folded header lines, a missing Max-Forwards or Content-Length).
Every failure is ``MalformedSip`` with one of the few ``MalformedKind`` labels, so
the transport counts a bad datagram by kind, drops it, and no call ends over it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

MAX_DATAGRAM = 65_535  # the largest UDP payload; anything longer is not one datagram
SIP_VERSION = "SIP/2.0"
DEFAULT_PORT = 5060
BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 8.1.1.7: marks a branch as unique per transaction


class MalformedKind(StrEnum):
    """Why a datagram was dropped: the label of the malformed-datagram counter."""

    EMPTY = "empty"  # only CR/LF (a keep-alive) or nothing
    OVERSIZE = "oversize"  # larger than one UDP datagram
    BAD_ENCODING = "bad_encoding"  # start line or headers not UTF-8, or control characters
    BAD_START_LINE = "bad_start_line"  # neither "METHOD uri SIP/2.0" nor "SIP/2.0 code reason"
    BAD_HEADER = "bad_header"  # a line that is no header, or a single header repeated
    MISSING_HEADER = "missing_header"  # Via, From, To, Call-ID or CSeq absent
    BAD_CONTENT_LENGTH = "bad_content_length"  # not a number, or more than the body holds
    BAD_CSEQ = "bad_cseq"  # not "number METHOD", or its method is not the request's
    BAD_MAX_FORWARDS = "bad_max_forwards"  # not a number 0-255
    BAD_VIA = "bad_via"  # a Via we could not answer to
    BAD_URI = "bad_uri"  # the Request-URI
    BAD_ADDRESS = "bad_address"  # From, To or Contact


class MalformedSip(ValueError):
    """One datagram we cannot use; ``kind`` names why, ``detail`` what."""

    def __init__(self, kind: MalformedKind, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


# ------------------------------------------------------------------ headers

# RFC 3261 7.3.3 and the IANA registry: one-letter names trunks do send.
COMPACT = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
}
_CANONICAL = {name.lower(): name for name in (
    *COMPACT.values(), "CSeq", "Max-Forwards", "Route", "Record-Route", "Allow", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language", "Min-SE",
    "Subscription-State", "User-Agent", "Server", "WWW-Authenticate", "Proxy-Authenticate",
    "Authorization", "Proxy-Authorization", "Expires", "Timestamp", "Reason", "Date",
    "P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Diversion", "RSeq", "RAck",
    "Retry-After", "Content-Disposition", "Replaces", "Warning", "Organization", "Priority",
)}
# Headers whose value is a comma-separated list (RFC 3261 7.3.1); get_all splits them.
LIST_HEADERS = frozenset(name.lower() for name in (
    "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require", "Proxy-Require",
    "Unsupported", "Accept", "Accept-Encoding", "Accept-Language", "Content-Encoding",
    "Allow-Events", "P-Asserted-Identity", "Diversion",
))
# Headers a message carries once at most (RFC 3261 20): a second one is ambiguous.
SINGLE_HEADERS = frozenset(n.lower() for n in ("From", "To", "Call-ID", "CSeq",
                                               "Content-Length", "Max-Forwards"))


def canonical_name(name: str) -> str:
    """The full, conventionally spelled name for a compact or odd-cased known header;
    unknown names are kept as sent."""
    lowered = name.lower()
    if lowered in COMPACT:
        return COMPACT[lowered]
    return _CANONICAL.get(lowered, name)


class Headers:
    """Ordered, multi-valued, case-insensitive headers, compact names made full."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def get(self, name: str) -> str | None:
        """The first value; of a list header, the first element of the list."""
        key = canonical_name(name).lower()
        if key in LIST_HEADERS:
            return next(iter(self.get_all(name)), None)
        return next((v for n, v in self._items if n.lower() == key), None)

    def get_all(self, name: str) -> list[str]:
        """Every value in order; a list header's comma-joined values come apart."""
        key = canonical_name(name).lower()
        values = [v for n, v in self._items if n.lower() == key]
        if key not in LIST_HEADERS:
            return values
        return [part for value in values for part in split_outside_quotes(value, ",") if part]

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one, where the first one stood."""
        name = canonical_name(name)
        key = name.lower()
        at = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), None)
        self.remove(name)
        self._items.insert(len(self._items) if at is None else at, (name, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at ``separator`` except inside a quoted string or <...>, stripped:
    display names and URIs may hold commas and semicolons."""
    parts: list[str] = []
    start, quoted, angled, escaped = 0, False, False, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angled = True
        elif ch == ">":
            angled = False
        elif ch == separator and not angled:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


# ------------------------------------------------------------------ messages


@dataclass(slots=True)
class SipRequest:
    method: str
    uri: str
    headers: Headers
    body: bytes = b""


@dataclass(slots=True)
class SipResponse:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""


SipMessage = SipRequest | SipResponse

_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_REQUEST_LINE = re.compile(r"([A-Za-z0-9.!%*_+`'~-]+) (\S+) (SIP/2\.0)", re.IGNORECASE)
_STATUS_LINE = re.compile(r"(SIP/2\.0) ([1-6][0-9][0-9])(?: (.*))?", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_ADDRESS_HEADERS = ("From", "To")
MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


def is_keepalive(data: bytes) -> bool:
    """A datagram of only CR/LF: a NAT keep-alive (RFC 5626 4.4.1), not a message."""
    return not data.strip(b"\r\n")


def parse_message(data: bytes) -> SipMessage:
    """One datagram as a request or response; ``MalformedSip`` names what is wrong.

    Checked: size, UTF-8 start line and headers, the start line, each header line,
    single headers not repeated, Via/From/To/Call-ID/CSeq present and parseable,
    CSeq's method, Max-Forwards, Contact addresses, and Content-Length against the
    body (bytes past it are dropped, RFC 3261 18.3; without it the body is the rest
    of the datagram)."""
    if len(data) > MAX_DATAGRAM:
        raise MalformedSip(MalformedKind.OVERSIZE, f"{len(data)} bytes")
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    if not data:
        raise MalformedSip(MalformedKind.EMPTY, "no start line")
    end = _HEAD_END.search(data)
    head, body = (data[:end.start()], data[end.end():]) if end else (data.rstrip(b"\r\n"), b"")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedSip(MalformedKind.BAD_ENCODING, f"byte {exc.start} of the head") from None
    if control := _CONTROL.search(text):
        raise MalformedSip(MalformedKind.BAD_ENCODING, f"control character {control[0]!r}")
    start, *lines = [line.removesuffix("\r") for line in text.split("\n")]
    headers = _parse_header_lines(lines)
    message = _parse_start_line(start, headers)
    _check_headers(message)
    message.body = _checked_body(headers, body)
    return message


def _parse_start_line(line: str, headers: Headers) -> SipMessage:
    if match := _STATUS_LINE.fullmatch(line):
        return SipResponse(int(match[2]), match[3] or "", headers)
    if match := _REQUEST_LINE.fullmatch(line):
        method, uri = match[1], match[2]
        if not _SCHEME.fullmatch(uri):
            raise MalformedSip(MalformedKind.BAD_URI, f"Request-URI {uri[:80]!r}")
        if uri.partition(":")[0].lower() in ("sip", "sips", "tel"):
            try:
                parse_uri(uri)
            except MalformedSip as exc:
                raise MalformedSip(MalformedKind.BAD_URI, f"Request-URI: {exc.detail}") from None
        return SipRequest(method, uri, headers)  # methods are case-sensitive (7.1)
    raise MalformedSip(MalformedKind.BAD_START_LINE, repr(line[:80]))


def _parse_header_lines(lines: list[str]) -> Headers:
    pairs: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):  # obsolete line folding (RFC 3261 7.3.1): one value
            if not pairs:
                raise MalformedSip(MalformedKind.BAD_HEADER, "a continuation line before any header")
            pairs[-1][1] = f"{pairs[-1][1]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN.fullmatch(name):
            raise MalformedSip(MalformedKind.BAD_HEADER, f"not a header line: {line[:80]!r}")
        pairs.append([name, value.strip(" \t")])
    headers = Headers()
    seen: set[str] = set()
    for name, value in pairs:
        headers.add(name, value)
        key = canonical_name(name).lower()
        if key in SINGLE_HEADERS:
            if key in seen:
                raise MalformedSip(MalformedKind.BAD_HEADER, f"{canonical_name(name)} twice")
            seen.add(key)
    return headers


def _check_headers(message: SipMessage) -> None:
    headers = message.headers
    for name in MANDATORY:
        if not headers.get(name):
            raise MalformedSip(MalformedKind.MISSING_HEADER, name)
    for value in headers.get_all("Via"):
        parse_via(value)
    for name in _ADDRESS_HEADERS:
        _address(name, headers.get(name) or "")
    for value in headers.get_all("Contact"):
        if value != "*":
            _address("Contact", value)
    call_id = headers.get("Call-ID") or ""
    if any(ch.isspace() for ch in call_id):
        raise MalformedSip(MalformedKind.BAD_HEADER, f"Call-ID {call_id[:80]!r}")
    number, method = cseq(headers)
    if isinstance(message, SipRequest) and method != message.method:
        raise MalformedSip(MalformedKind.BAD_CSEQ, f"CSeq method {method} on a {message.method}")
    forwards = headers.get("Max-Forwards")
    if forwards is not None and not (forwards.isdigit() and forwards.isascii() and int(forwards) <= 255):
        raise MalformedSip(MalformedKind.BAD_MAX_FORWARDS, repr(forwards[:20]))


def _address(name: str, value: str) -> NameAddr:
    try:
        return parse_name_addr(value)
    except MalformedSip as exc:
        raise MalformedSip(MalformedKind.BAD_ADDRESS, f"{name}: {exc.detail}") from None


def _checked_body(headers: Headers, body: bytes) -> bytes:
    declared = headers.get("Content-Length")
    if declared is None:
        return body
    if not (declared.isdigit() and declared.isascii()) or len(declared) > 6:
        raise MalformedSip(MalformedKind.BAD_CONTENT_LENGTH, repr(declared[:20]))
    length = int(declared)
    if length > len(body):
        raise MalformedSip(MalformedKind.BAD_CONTENT_LENGTH,
                           f"declares {length} bytes, the body has {len(body)}")
    return body[:length]


def cseq(headers: Headers) -> tuple[int, str]:
    """CSeq as (number, method); the number is below 2**31 (RFC 3261 8.1.1.5)."""
    value = headers.get("CSeq") or ""
    number, _, method = value.partition(" ")
    method = method.strip(" \t")
    if not (number.isdigit() and number.isascii() and len(number) <= 10 and int(number) < 2**31
            and _TOKEN.fullmatch(method)):
        raise MalformedSip(MalformedKind.BAD_CSEQ, repr(value[:40]))
    return int(number), method


def build_message(message: SipMessage) -> bytes:
    """The datagram for ``message``: CRLF line ends and a Content-Length that is true."""
    if isinstance(message, SipRequest):
        start = f"{message.method} {message.uri} {SIP_VERSION}"
    else:
        start = f"{SIP_VERSION} {message.status:03d} {message.reason}"
    headers = message.headers.copy()
    headers.set("Content-Length", str(len(message.body)))
    lines = [start, *(f"{name}: {value}" for name, value in headers.items())]
    for line in lines:
        if "\r" in line or "\n" in line:  # a value with a line end would forge headers
            raise ValueError(f"a line end inside {line[:40]!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + message.body


REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 183: "Session Progress",
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    422: "Session Interval Too Small", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 603: "Decline",
}
_DIALOG_METHODS = ("INVITE", "SUBSCRIBE", "REFER")


def response_to(request: SipRequest, status: int, reason: str | None = None, *,
                to_tag: str | None = None, body: bytes = b"",
                content_type: str | None = None) -> SipResponse:
    """A response carrying what RFC 3261 8.2.6.2 says to copy: every Via in order,
    From, To (with ``to_tag`` added when the request's To has none), Call-ID, CSeq;
    Timestamp on a 100 (8.2.6.1), and Record-Route on a response that sets up a
    dialog (12.1.1)."""
    src = request.headers
    headers = Headers()
    for via in src.get_all("Via"):
        headers.add("Via", via)
    headers.add("From", src.get("From") or "")
    to = src.get("To") or ""
    if to_tag and "tag" not in _address("To", to).params:
        to = f"{to};tag={to_tag}"
    headers.add("To", to)
    headers.add("Call-ID", src.get("Call-ID") or "")
    headers.add("CSeq", src.get("CSeq") or "")
    if status == 100 and (stamp := src.get("Timestamp")):
        headers.add("Timestamp", stamp)
    if 100 < status < 300 and request.method in _DIALOG_METHODS:
        for route in src.get_all("Record-Route"):
            headers.add("Record-Route", route)
    if body and content_type:
        headers.add("Content-Type", content_type)
    return SipResponse(status, reason or REASONS.get(status, "Unknown"), headers, body)


# ------------------------------------------------------------------ URIs and addresses

_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\.?")
_USER_BAD = re.compile(r"[\s<>\"@]")


@dataclass(slots=True)
class SipUri:
    scheme: str  # "sip", "sips" or "tel"
    user: str  # may be empty; for tel: the number
    host: str  # empty for tel:; an IPv6 host keeps its brackets
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # names lowercased
    password: str = ""
    headers: str = ""  # the raw part after "?", kept as sent


def _params(parts: list[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if not _TOKEN.fullmatch(name):
            raise MalformedSip(MalformedKind.BAD_URI, f"parameter {part[:40]!r}")
        params[name.lower()] = value.strip() if eq else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _hostport(text: str) -> tuple[str, int | None]:
    host, port = text, None
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[:close + 1], text[close + 1:]
        if close < 0 or (rest and not rest.startswith(":")):
            raise MalformedSip(MalformedKind.BAD_URI, f"host {text[:60]!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    if not _HOST.fullmatch(host):
        raise MalformedSip(MalformedKind.BAD_URI, f"host {host[:60]!r}")
    if port_text is not None:
        if not (port_text.isdigit() and port_text.isascii() and len(port_text) <= 5
                and int(port_text) <= 65535):
            raise MalformedSip(MalformedKind.BAD_URI, f"port {port_text[:10]!r}")
        port = int(port_text)
    return host, port


def parse_uri(text: str) -> SipUri:
    """A sip:, sips: or tel: URI (RFC 3261 19.1, RFC 3966), parameters included."""
    scheme, colon, rest = text.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips", "tel") or not rest:
        raise MalformedSip(MalformedKind.BAD_URI, f"not a sip/sips/tel URI: {text[:80]!r}")
    rest, _, uri_headers = rest.partition("?")
    if scheme == "tel":
        number, *params = split_outside_quotes(rest, ";")
        if not number or _USER_BAD.search(number):
            raise MalformedSip(MalformedKind.BAD_URI, f"number {number[:40]!r}")
        return SipUri("tel", number, "", None, _params(params), "", uri_headers)
    user = password = ""
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, _, password = userinfo.partition(":")
        if not user or _USER_BAD.search(userinfo):
            raise MalformedSip(MalformedKind.BAD_URI, f"user {userinfo[:40]!r}")
    hostport, *params = rest.split(";")
    host, port = _hostport(hostport)
    return SipUri(scheme, user, host, port, _params(params), password, uri_headers)


def format_uri(uri: SipUri) -> str:
    if uri.scheme == "tel":
        text = f"tel:{uri.user}"
    else:
        userinfo = f"{uri.user}:{uri.password}@" if uri.password else (f"{uri.user}@" if uri.user else "")
        port = f":{uri.port}" if uri.port is not None else ""
        text = f"{uri.scheme}:{userinfo}{uri.host}{port}"
    return text + _format_params(uri.params) + (f"?{uri.headers}" if uri.headers else "")


@dataclass(slots=True)
class NameAddr:
    display: str  # unquoted; empty when none
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)  # header params: tag, expires...

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def parse_name_addr(text: str) -> NameAddr:
    """From/To/Contact/Refer-To: ``"Name" <uri>;params``, ``Name <uri>``, or a bare
    URI whose ``;params`` then belong to the header (RFC 3261 20.10)."""
    text = text.strip()
    if "<" in text or text.startswith('"'):
        display, rest = _display_name(text)
        if not rest.startswith("<") or ">" not in rest:
            raise MalformedSip(MalformedKind.BAD_ADDRESS, f"no <uri> in {text[:80]!r}")
        close = rest.index(">")
        uri = parse_uri(rest[1:close])
        tail = rest[close + 1:].strip()
        if tail and not tail.startswith(";"):
            raise MalformedSip(MalformedKind.BAD_ADDRESS, f"after the URI: {tail[:40]!r}")
        params = split_outside_quotes(tail, ";")[1:] if tail else []
        return NameAddr(display, uri, _params(params))
    uri_text, *params = split_outside_quotes(text, ";")
    if "?" in uri_text or "," in uri_text:
        raise MalformedSip(MalformedKind.BAD_ADDRESS, f"a bare URI with ? or , {text[:80]!r}")
    return NameAddr("", parse_uri(uri_text), _params(params))


def _display_name(text: str) -> tuple[str, str]:
    if not text.startswith('"'):
        display, _, rest = text.partition("<")
        return display.strip(), "<" + rest
    out, i = [], 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), text[i + 1:].strip()
        out.append(ch)
        i += 1
    raise MalformedSip(MalformedKind.BAD_ADDRESS, f"unterminated display name {text[:80]!r}")


def format_name_addr(addr: NameAddr) -> str:
    display = ""
    if addr.display:
        escaped = addr.display.replace("\\", "\\\\").replace('"', '\\"')
        display = f'"{escaped}" '
    return f"{display}<{format_uri(addr.uri)}>{_format_params(addr.params)}"


# ------------------------------------------------------------------ Via

_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+(.+)", re.IGNORECASE | re.DOTALL)


@dataclass(slots=True)
class Via:
    transport: str  # upper case: UDP, TCP, TLS...
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # branch, received, rport...

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def parse_via(text: str) -> Via:
    """One Via value (after ``get_all`` split the list): ``SIP/2.0/UDP host:port;params``."""
    match = _VIA.fullmatch(text.strip())
    if not match:
        raise MalformedSip(MalformedKind.BAD_VIA, repr(text[:80]))
    sent_by, *params = split_outside_quotes(match[2], ";")
    try:
        host, port = _hostport(sent_by.strip())
        parsed = _params(params)
    except MalformedSip as exc:
        raise MalformedSip(MalformedKind.BAD_VIA, exc.detail) from None
    return Via(match[1].upper(), host, port, parsed)


def format_via(via: Via) -> str:
    port = f":{via.port}" if via.port is not None else ""
    return f"SIP/2.0/{via.transport} {via.host}{port}{_format_params(via.params)}"


def stamp_via(via: Via, source: tuple[str, int]) -> Via:
    """The top Via as a server records it on receipt (RFC 3261 18.2.1, RFC 3581):
    ``received`` set to the source address and a requested ``rport`` filled with the
    source port, so the client learns how it is seen through its NAT."""
    params = dict(via.params)
    params["received"] = source[0]
    if "rport" in params:
        params["rport"] = str(source[1])
    return Via(via.transport, via.host, via.port, params)


def response_address(via: Via, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response to a request over UDP goes (RFC 3261 18.2.2, RFC 3581).

    The host is the address the request came from: that is what ``received`` holds
    (a server sets it, 18.2.1), so a ``received`` or ``maddr`` the sender wrote
    itself cannot aim our responses at someone else. The port is the source port when
    the client asked for ``rport``, else the sent-by port, else 5060."""
    if "rport" in via.params:
        return source[0], source[1]
    return source[0], via.port if via.port is not None else DEFAULT_PORT


def top_via(message: SipMessage) -> Via:
    vias = message.headers.get_all("Via")
    if not vias:
        raise MalformedSip(MalformedKind.MISSING_HEADER, "Via")
    return parse_via(vias[0])


# ------------------------------------------------------------------ identifiers


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(12)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(16)}@{host}"
