"""Signed admin session cookies (HMAC-SHA256, standard library only).

The cookie holds ``base64url(json({"u": user, "x": expiry, "c": csrf}))`` and its MAC,
so the server keeps no session table and several processes sharing ``SESSION_SECRET``
accept each other's cookies. The CSRF token lives inside the signed cookie: a form or
``fetch()`` must echo it, which a page on another site cannot read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

COOKIE_NAME = "ap_session"


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires: int
    csrf: str


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and reads session cookies with one secret."""

    def __init__(self, secret: bytes, max_age: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("session secret must not be empty")
        self._secret = hashlib.sha256(b"admin-session\0" + secret).digest()
        self.max_age = max_age
        self._clock = clock

    def new(self, user: str) -> Session:
        return Session(user=user, expires=int(self._clock()) + self.max_age,
                       csrf=secrets.token_urlsafe(24))

    def dumps(self, session: Session) -> str:
        body = orjson.dumps({"u": session.user, "x": session.expires, "c": session.csrf})
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()
        return f"{_b64e(body)}.{_b64e(mac)}"

    def loads(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None if it is missing, forged or expired."""
        if not cookie:
            return None
        try:
            body_part, mac_part = cookie.split(".")
            body, mac = _b64d(body_part), _b64d(mac_part)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, hmac.new(self._secret, body, hashlib.sha256).digest()):
            return None
        try:
            data = orjson.loads(body)
            session = Session(user=str(data["u"]), expires=int(data["x"]), csrf=str(data["c"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if self._clock() >= session.expires:
            return None
        return session
