"""Who may use the admin screens and the REST API, decided once per request.

* Admin screens need a signed session cookie, got by logging in at ``/login``.
* ``/api/…`` and ``/debug/…`` need ``X-API-Key`` (or ``Authorization: Bearer``) when
  ``API_KEY`` is set, or a logged-in session (then ``X-CSRF-Token`` on unsafe methods).
* With no admin password configured the server is *open to loopback only*: requests
  from 127.0.0.1/::1 that did not come through a proxy are let in (the admin screens get
  a session of their own, so forms still carry CSRF tokens; a cross-site ``Origin`` on
  an unsafe API call is refused), anything else gets 403 saying why.
* Public: Twilio's webhooks and media stream (they check their own signatures and
  tokens), the browser test call's media stream (a minted token), ``/healthz``,
  ``/metrics``, ``/static/…`` and the login page.

This is a plain ASGI middleware, so WebSocket audio frames never pass through it: it
looks at the handshake only.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request

from agentplatform.config import Settings
from agentplatform.web.passwords import check_hash_format
from agentplatform.web.sessions import COOKIE_NAME, Session, SessionSigner

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
PUBLIC_EXACT = frozenset({"/healthz", "/metrics", "/login", "/favicon.ico"})
PUBLIC_PREFIXES = ("/twilio/", "/static/", "/browser-call/media")
API_PREFIXES = ("/api/", "/debug/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOCAL_USER = "local"
OPEN_MODE_MESSAGE = (
    "No admin password is configured, so the admin screens and the API answer only "
    "requests from this machine (loopback). Set ADMIN_PASSWORD_HASH (make one with "
    "`agentplatform hash-password`) to allow logging in from elsewhere.")


class Access:
    """The access policy and the session signer, built from the settings at start."""

    def __init__(self, settings: Settings) -> None:
        self.user = settings.admin_user
        self.password_hash = settings.admin_password_hash
        if self.password_hash:
            check_hash_format(self.password_hash)  # a typo must not leave the server open
        self.api_key = settings.api_key
        secret = settings.session_secret.encode() if settings.session_secret \
            else secrets.token_bytes(32)
        self.signer = SessionSigner(secret, settings.session_max_age_seconds)
        self.secure_cookies = settings.public_url.startswith("https://")

    @property
    def open_mode(self) -> bool:
        return not self.password_hash

    def announce(self) -> None:
        """One line at start saying how the admin side is protected."""
        if self.open_mode:
            log.warning("admin access: %s", OPEN_MODE_MESSAGE)
        else:
            log.info("admin access: login required (user %r); API %s", self.user,
                     "key or session required" if self.api_key else "needs a logged-in session")

    def api_key_matches(self, presented: str) -> bool:
        return bool(self.api_key) and hmac.compare_digest(presented.encode(), self.api_key.encode())

    def cookie_header(self, session: Session | None) -> str:
        """A ``Set-Cookie`` value carrying ``session`` (None: delete the cookie)."""
        value = self.signer.dumps(session) if session else ""
        max_age = self.signer.max_age if session else 0
        secure = "; Secure" if self.secure_cookies else ""
        return f"{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _is_loopback(scope: Scope, headers: dict[str, str]) -> bool:
    """From this machine, and not relayed by a proxy (which would make everyone local)."""
    client = scope.get("client")
    if not client or client[0] not in LOOPBACK:
        return False
    return "x-forwarded-for" not in headers and "forwarded" not in headers


def _cross_site(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != headers.get("host", "")


def _presented_key(headers: dict[str, str]) -> str:
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key


def _is_public(path: str) -> bool:
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


class AccessMiddleware:
    """Applies :class:`Access` to every HTTP request and WebSocket handshake."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no session
            cookies = SimpleCookie()
        morsel = cookies.get(COOKIE_NAME)
        session = self.access.signer.loads(morsel.value if morsel else None)
        state = scope.setdefault("state", {})
        state["session"] = session
        state["access"] = self.access
        is_api = scope["path"].startswith(API_PREFIXES)
        decide = self._api if is_api else self._admin
        await decide(scope, receive, send, headers, session, state)

    async def _api(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                   session: Session | None, state: dict[str, Any]) -> None:
        method = scope.get("method", "GET")
        presented = _presented_key(headers)
        if presented and self.access.api_key_matches(presented):
            state["auth"] = "api_key"
        elif session is not None:
            if method not in SAFE_METHODS and not hmac.compare_digest(
                    headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()):
                await _deny(scope, receive, send, 403, "missing or wrong X-CSRF-Token header")
                return
            state["auth"] = "session"
        elif self.access.open_mode and _is_loopback(scope, headers):
            if method not in SAFE_METHODS and _cross_site(headers):
                await _deny(scope, receive, send, 403, "cross-site request refused")
                return
            state["auth"] = "loopback"
        else:
            why = OPEN_MODE_MESSAGE if self.access.open_mode and not self.access.api_key \
                else "send the API key in the X-API-Key header"
            await _deny(scope, receive, send, 401, why)
            return
        await self.app(scope, receive, send)

    async def _admin(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                     session: Session | None, state: dict[str, Any]) -> None:
        if session is not None:
            state["auth"] = "session"
            await self.app(scope, receive, send)
            return
        if self.access.open_mode:
            if not _is_loopback(scope, headers):
                await _deny(scope, receive, send, 403, OPEN_MODE_MESSAGE)
                return
            session = self.access.signer.new(LOCAL_USER)
            state["session"], state["auth"] = session, "loopback"
            await self.app(scope, receive, _with_cookie(send, self.access.cookie_header(session)))
            return
        if scope["type"] == "http" and scope.get("method") in SAFE_METHODS:
            target = scope["path"] + (("?" + scope["query_string"].decode("latin-1"))
                                      if scope.get("query_string") else "")
            await _redirect(send, f"/login?next={quote(target, safe='')}")
            return
        await _deny(scope, receive, send, 401, "log in first")


def _with_cookie(send: Send, cookie: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode("latin-1"))]
        await send(message)
    return wrapped


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")),
                            (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ for routes


def session_of(request: Request) -> Session | None:
    return getattr(request.state, "session", None)


def csrf_token(request: Request) -> str:
    session = session_of(request)
    return session.csrf if session else ""


async def require_csrf(request: Request) -> None:
    """Router dependency: an unsafe admin request must echo the session's CSRF token,
    in the ``csrf_token`` form field or the ``X-CSRF-Token`` header."""
    if request.method in SAFE_METHODS:
        return
    session = session_of(request)
    presented = request.headers.get(CSRF_HEADER, "")
    if not presented and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        presented = str((await request.form()).get(CSRF_FIELD, ""))
    if session is None or not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise HTTPException(status_code=403, detail="the form is stale or was not sent by "
                            "this site (CSRF check failed); reload the page and try again")
