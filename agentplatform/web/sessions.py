"""Admin session cookies, signed by the platform's one signer (``signing.py``).

The cookie holds ``{"u": user, "c": csrf, "pw": fingerprint, "exp": …, "jti": …}``,
signed with the ``SESSION_COOKIE`` salt, so the server keeps no session table and
several processes sharing ``SESSION_SECRET`` accept each other's cookies. The CSRF
token lives inside the signed cookie: a form or ``fetch()`` must echo it, which a page
on another site cannot read.

Ending sessions without a table:

* ``pw`` is a fingerprint of the configured ``ADMIN_PASSWORD_HASH``: changing the
  password (a new hash) ends every session signed under the old one.
* ``jti`` names this one cookie: logging out claims it in the shared single-use store
  (``single_use.py``) until the cookie would expire, and every request checks it, so a
  copy of the cookie taken before logout is refused afterwards, by every process.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentplatform.signing import SESSION_COOKIE, BadToken, Signer

COOKIE_NAME = "ap_session"
# Revocations share the single-use store with stream tokens: keep the names apart.
REVOKED_PREFIX = "session:"


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires: int
    csrf: str
    jti: str
    value: str  # the signed cookie itself

    @property
    def revocation_id(self) -> str:
        return REVOKED_PREFIX + self.jti


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the configured hash: equal while the password is unchanged.
    (The hash is salted scrypt output; this digest of it cannot be turned back into it.)"""
    return hashlib.sha256(b"agentplatform.session-password\0" + password_hash.encode()
                          ).hexdigest()[:16]


class SessionSigner:
    """Issues and reads session cookies with one secret, bound to one password hash."""

    def __init__(self, secret: bytes, max_age: int, *, password_hash: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = Signer(secret, SESSION_COOKIE, clock=clock)
        self._fingerprint = password_fingerprint(password_hash)
        self.max_age = max_age

    def new(self, user: str) -> Session:
        """A fresh session for ``user`` with its own CSRF token and id."""
        value = self._signer.dumps({"u": user, "c": secrets.token_urlsafe(24),
                                    "pw": self._fingerprint}, self.max_age)
        session = self.loads(value)
        assert session is not None  # just signed with our own key and fingerprint
        return session

    def loads(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None if it is missing, forged, expired, or
        signed before the password changed. (Revocation is checked by the caller: it
        needs the shared store.)"""
        try:
            body = self._signer.loads(cookie)
        except BadToken:
            return None
        if body.get("pw") != self._fingerprint:
            return None
        user, csrf = body.get("u"), body.get("c")
        if not isinstance(user, str) or not isinstance(csrf, str) or not csrf:
            return None
        return Session(user=user, expires=int(body["exp"]), csrf=csrf, jti=str(body["jti"]),
                       value=str(cookie))
