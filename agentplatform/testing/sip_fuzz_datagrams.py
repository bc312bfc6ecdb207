"""Fuzzed SIP datagrams and SDP offers, and what the parsers must do with them.

Valid messages are written here from the RFC 3261 grammar with their own
string joins (never with ``messages.build_message``, so a shared misreading cannot
pass): random methods, URIs, compact or full header names in any case, folded
lines, bare LF, a body with or without Content-Length. Mutated ones flip, cut,
repeat and splice bytes of those and of trunk-shaped INVITEs; random bytes make
up the rest. The properties: ``parse_message`` raises nothing but
``MalformedSip``; a datagram that parses builds back into one that parses equal;
a generated valid message parses with the values it was written with; and
``answer_offer`` raises nothing but ``SdpError``, with a 400 or 488.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from hypothesis import strategies as st

from agentplatform.carriers.sip.messages import (
    MalformedKind, MalformedSip, SipRequest, SipResponse, build_message, parse_message,
)
from agentplatform.carriers.sip.sdp import SdpError, answer_offer

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!%*_+`'~-"
METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "NOTIFY", "INFO", "UPDATE", "PRACK"]
NAMES = {"Via": ["Via", "v", "VIA", "V"], "From": ["From", "f", "fROM"], "To": ["To", "t", "TO"],
         "Call-ID": ["Call-ID", "i", "call-id", "CALL-ID"], "CSeq": ["CSeq", "cseq"],
         "Content-Length": ["Content-Length", "l", "content-length"]}
SEPARATORS = [b"\r", b"\n", b"\r\n", b":", b";", b",", b"<", b">", b'"', b"\\", b" ", b"\t",
              b"\x00", b"\xff", b"\xc3", b"=", b"@", b"[", b"]", b"/", b"0", b"9" * 12]

SEED = (
    b"INVITE sip:+15550001111@198.51.100.7:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;rport;branch=z9hG4bKPj5c1a\r\n"
    b'From: "Front, Desk" <sip:2001@203.0.113.10>;tag=6f1ad7b3\r\n'
    b"To: <sip:+15550001111@198.51.100.7>\r\nContact: <sip:asterisk@203.0.113.10:5060>\r\n"
    b"Call-ID: 0f2a6e34-9c3b\r\nCSeq: 20861 INVITE\r\nMax-Forwards: 70\r\n"
    b"Record-Route: <sip:54.172.60.0;lr>,<sip:54.172.60.1;lr>\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 135\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n"
    b"m=audio 18000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKx;received=192.0.2.1\r\n"
    b"f: <sip:bot@198.51.100.7>;tag=a\r\nt: sip:+1555@example.com;tag=b\r\ni: x@y\r\n"
    b"CSeq: 2 BYE\r\nl: 0\r\n\r\n",
)
SDP_SEED = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
    b"m=video 5002 RTP/AVP 31\r\nm=audio 4000 RTP/AVP 8 0 98 101\r\na=rtpmap:98 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\na=sendonly\r\n"
)


@dataclass(frozen=True, slots=True)
class Written:
    """A valid message as written, with what its parse must show."""

    data: bytes
    call_id: str
    body: bytes
    method: str | None  # None for a response


def _token(rnd: Random, low: int = 1, high: int = 12) -> str:
    return "".join(rnd.choices(TOKEN_CHARS, k=rnd.randint(low, high)))


def _host(rnd: Random) -> str:
    pick = rnd.random()
    if pick < 0.5:
        return ".".join(str(rnd.randint(0, 255)) for _ in range(4))
    if pick < 0.9:
        labels = ["".join(rnd.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=rnd.randint(1, 8)))
                  for _ in range(rnd.randint(1, 3))]
        return "h" + ".".join(labels) + rnd.choice([".com", ".net", ".example.org"])
    return rnd.choice(["[2001:db8::1]", "[::1]", "[fe80::1:2]"])


def _port(rnd: Random) -> str:
    return rnd.choice(["", f":{rnd.randint(1, 65535)}", ":5060"])


def _user(rnd: Random) -> str:
    if rnd.random() < 0.6:
        return rnd.choice(["+", ""]) + "".join(rnd.choices("0123456789", k=rnd.randint(3, 15)))
    return "u" + "".join(rnd.choices("abcdefghijklmnopqrstuvwxyz0123456789._-", k=rnd.randint(0, 10)))


def _params(rnd: Random) -> str:
    return "".join(f";{_token(rnd)}" + (f"={_token(rnd)}" if rnd.random() < 0.7 else "")
                   for _ in range(rnd.randint(0, 3)))


def _uri(rnd: Random) -> str:
    return f"{rnd.choice(['sip', 'sips', 'SIP'])}:{_user(rnd)}@{_host(rnd)}{_port(rnd)}{_params(rnd)}"


def _address(rnd: Random) -> str:
    if rnd.random() < 0.2:
        return f"sip:{_user(rnd)}@{_host(rnd)}" + (f";tag={_token(rnd)}" if rnd.random() < 0.5 else "")
    display = rnd.choice(["", _token(rnd) + " ", '"' + "".join(rnd.choices("abc ,;<>:@é\\'", k=rnd.randint(0, 10)))
                          .replace("\\", "\\\\") + '" '])
    return f"{display}<{_uri(rnd)}>{_params(rnd)}"


def _via(rnd: Random) -> str:
    transport = rnd.choice(["UDP", "udp", "TCP"])
    return f"SIP/2.0/{transport} {_host(rnd)}{_port(rnd)};branch=z9hG4bK{_token(rnd)}{_params(rnd)}"


def _value(rnd: Random) -> str:
    alphabet = "abcXYZ019 ,;:<>\"@=/é€中\t"
    return "".join(rnd.choices(alphabet, k=rnd.randint(0, 30))).strip(" \t")


def _name(rnd: Random, full: str) -> str:
    return rnd.choice(NAMES.get(full, [full]))


def write(rnd: Random) -> Written:
    """A valid request or response, in one of the many spellings trunks use."""
    is_request = rnd.random() < 0.6
    method = rnd.choice(METHODS) if rnd.random() < 0.8 else _token(rnd)
    cseq_method = method if is_request else rnd.choice(METHODS)
    if is_request:
        start = f"{method} {_uri(rnd)} SIP/2.0"
    else:
        start = f"SIP/2.0 {rnd.randint(100, 699)} {_value(rnd)}".rstrip(" ")
    call_id = _token(rnd, 1, 30) + (f"@{_host(rnd)}" if rnd.random() < 0.5 else "")
    headers = [(_name(rnd, "Via"), ", ".join(_via(rnd) for _ in range(rnd.randint(1, 3)))),
               (_name(rnd, "From"), _address(rnd)), (_name(rnd, "To"), _address(rnd)),
               (_name(rnd, "Call-ID"), call_id),
               (_name(rnd, "CSeq"), f"{rnd.randint(0, 2**31 - 1)} {cseq_method}")]
    for _ in range(rnd.randint(0, 4)):
        name = "X-" + _token(rnd)
        headers.append((name, _value(rnd)))
    if rnd.random() < 0.5:
        headers.append(("Max-Forwards", str(rnd.randint(0, 255))))
    if rnd.random() < 0.3:
        headers.append((rnd.choice(["Contact", "m"]), ", ".join(_address(rnd) for _ in range(rnd.randint(1, 2)))))
    body = rnd.randbytes(rnd.choice([0, 0, rnd.randint(1, 200)]))
    if rnd.random() < 0.5 or body.startswith((b"\r", b"\n")):
        headers.append((_name(rnd, "Content-Length"), str(len(body))))
    rnd.shuffle(headers)
    eol = rnd.choice(["\r\n", "\n"])
    lines = [start]
    for name, value in headers:
        colon = rnd.choice([": ", ":", " : ", ":\t"])
        if " " in value and rnd.random() < 0.3:  # fold at a space (RFC 3261 7.3.1)
            cut = value.index(" ")
            value = value[:cut] + eol + rnd.choice([" ", "\t", "   "]) + value[cut + 1:]
        lines.append(f"{name}{colon}{value}")
    data = (eol.join(lines) + eol + eol).encode() + body
    return Written(data, call_id, body, method if is_request else None)


def mutate(rnd: Random, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, cut, repeated or spliced."""
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if not out:
            break
        at = rnd.randrange(len(out))
        action = rnd.randrange(5)
        if action == 0:
            out[at] = rnd.randrange(256)
        elif action == 1:
            del out[at:at + rnd.randint(1, 20)]
        elif action == 2:
            out[at:at] = rnd.choice(SEPARATORS)
        elif action == 3:
            del out[at:]
        else:
            end = out.find(b"\n", at)
            out[at:at] = out[at:end + 1 if end >= 0 else len(out)]  # a repeated line
    return bytes(out)


def datagram(rnd: Random) -> bytes:
    """One fuzzed datagram: valid, mutated (valid or trunk-shaped), or random bytes."""
    pick = rnd.random()
    if pick < 0.3:
        return write(rnd).data
    if pick < 0.85:
        return mutate(rnd, rnd.choice(SEED) if rnd.random() < 0.3 else write(rnd).data)
    return rnd.randbytes(rnd.randint(0, 300))


def offer(rnd: Random) -> bytes:
    """One fuzzed SDP offer: the seed mutated, random lines, or random bytes."""
    pick = rnd.random()
    if pick < 0.6:
        return mutate(rnd, SDP_SEED)
    if pick < 0.9:
        lines = [f"{rnd.choice('vocmatsb')}={''.join(rnd.choices('0123456789 /:.aAINPRTVUDdio-=', k=rnd.randint(0, 30)))}"
                 for _ in range(rnd.randint(0, 12))]
        return ("v=0\r\n" + "".join(line + "\r\n" for line in lines)).encode()
    return rnd.randbytes(rnd.randint(0, 300))


# Hypothesis draws only a seed (shrinking SIP text draw by draw is slow and the
# failing datagram is printed by the failing assertion anyway).
_seeds = st.integers(0, 2**64 - 1)
written = _seeds.map(lambda seed: write(Random(seed)))
datagrams = _seeds.map(lambda seed: datagram(Random(seed)))
sdp_offers = _seeds.map(lambda seed: offer(Random(seed)))


# ------------------------------------------------------------------ the properties


def check_datagram(data: bytes) -> MalformedKind | None:
    """The parser's property on one datagram: it parses and round-trips, or it is
    refused with a kind. Anything else raised fails the case."""
    try:
        message = parse_message(data)
    except MalformedSip as exc:
        assert isinstance(exc.kind, MalformedKind), exc.kind
        return exc.kind
    assert isinstance(message, SipRequest | SipResponse)
    again = parse_message(build_message(message))
    message.headers.set("Content-Length", str(len(message.body)))  # build makes it true
    assert again == message, (message, again)
    return None


def check_written(case: Written) -> None:
    message = parse_message(case.data)
    assert message.headers.get("Call-ID") == case.call_id
    assert message.body == case.body
    if case.method is None:
        assert isinstance(message, SipResponse)
    else:
        assert isinstance(message, SipRequest) and message.method == case.method
    check_datagram(case.data)


def check_offer(offer: bytes) -> int | None:
    """The SDP answerer's property: an answer, or SdpError with 400 or 488."""
    try:
        answer_offer(offer, local_address="198.51.100.7", local_port=20000, session_id=1, version=1)
    except SdpError as exc:
        assert exc.status in (400, 488), exc.status
        return exc.status
    return None
