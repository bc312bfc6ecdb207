"""HTTP digest authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616).

A trunk that wants to know who is calling answers our INVITE with 401
(``WWW-Authenticate``) or 407 (``Proxy-Authenticate``); we answer once with
``Authorization`` / ``Proxy-Authorization``. Pure: no sockets, no clock.

What we do: the MD5 and SHA-256 algorithms (and their ``-sess`` forms), with
``qop=auth`` when the challenge offers it, else the RFC 2069 form without qop
(still common on trunks). What we refuse, with ``DigestError``: a challenge
that offers only ``auth-int`` (its hash covers the body, which trunks never ask
of an INVITE and we do not compute), an algorithm we do not know, or a challenge
missing its realm or nonce. Refusing is failing closed: the call is not placed,
and the reason names the challenge.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from agentplatform.carriers.sip.messages import split_outside_quotes

# algorithm name (upper case) → hash function; the "-sess" forms share it
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# When a challenge offers several, the strongest we know goes first (RFC 7616 §3.7).
PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")


class DigestError(ValueError):
    """A challenge we cannot (or will not) answer; the text says why."""


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"  # upper case, e.g. "SHA-256-SESS"
    qop: tuple[str, ...] = ()  # the qop options offered, lower case; () = none (RFC 2069)
    opaque: str | None = None
    stale: bool = False


def _params(text: str) -> dict[str, str]:
    """``name=value`` pairs of a challenge, values unquoted; names lower case."""
    out: dict[str, str] = {}
    for part in split_outside_quotes(text, ","):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name.strip().lower()] = value
    return out


def parse_challenge(header: str) -> Challenge:
    """A ``WWW-Authenticate``/``Proxy-Authenticate`` value; ``DigestError`` if it is
    not a digest challenge we can answer."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"authentication scheme {scheme!r} is not Digest")
    params = _params(rest)
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or not nonce:
        raise DigestError("the digest challenge has no realm or no nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in PREFERENCE:
        raise DigestError(f"digest algorithm {algorithm!r} is not supported (MD5, SHA-256)")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise DigestError(f"the challenge offers qop {', '.join(qop)}; only auth is supported")
    return Challenge(realm=realm, nonce=nonce, algorithm=algorithm, qop=qop,
                     opaque=params.get("opaque"), stale=params.get("stale", "").lower() == "true")


def choose_challenge(headers: list[str]) -> Challenge:
    """Of several challenges (one per algorithm, RFC 7616 §3.7), the strongest we can
    answer; ``DigestError`` naming every refusal when there is none."""
    usable: list[Challenge] = []
    refusals: list[str] = []
    for header in headers:
        try:
            usable.append(parse_challenge(header))
        except DigestError as exc:
            refusals.append(str(exc))
    if not usable:
        raise DigestError("; ".join(refusals) or "no challenge in the response")
    return min(usable, key=lambda c: PREFERENCE.index(c.algorithm))


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm.removesuffix("-SESS")](text.encode("utf-8")).hexdigest()


def digest_response(challenge: Challenge, *, method: str, uri: str, username: str,
                    password: str, cnonce: str = "", nc: int = 1) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 without qop)."""
    alg = challenge.algorithm
    ha1 = _h(alg, f"{username}:{challenge.realm}:{password}")
    if alg.endswith("-SESS"):
        ha1 = _h(alg, f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _h(alg, f"{method}:{uri}")
    if "auth" in challenge.qop:
        return _h(alg, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return _h(alg, f"{ha1}:{challenge.nonce}:{ha2}")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(challenge: Challenge, *, method: str, uri: str, username: str, password: str,
                  cnonce: str | None = None, nc: int = 1) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge``."""
    needs_cnonce = "auth" in challenge.qop or challenge.algorithm.endswith("-SESS")
    cnonce = (cnonce or secrets.token_hex(16)) if needs_cnonce else ""
    response = digest_response(challenge, method=method, uri=uri, username=username,
                               password=password, cnonce=cnonce, nc=nc)
    parts = [f"username={_quoted(username)}", f"realm={_quoted(challenge.realm)}",
             f"nonce={_quoted(challenge.nonce)}", f"uri={_quoted(uri)}",
             f"response={_quoted(response)}", f"algorithm={challenge.algorithm}"]
    if cnonce:
        parts.append(f"cnonce={_quoted(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quoted(challenge.opaque)}")
    if "auth" in challenge.qop:
        parts += ["qop=auth", f"nc={nc:08x}"]
    return "Digest " + ", ".join(parts)
