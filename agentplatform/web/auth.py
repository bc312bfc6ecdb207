"""Who may use the admin screens and the REST API, decided once per request.

* Admin screens need a signed session cookie, got by logging in at ``/login``.
* ``/api/…`` and ``/debug/…`` need ``X-API-Key`` (or ``Authorization: Bearer``) when
  ``API_KEY`` is set, or a logged-in session (then ``X-CSRF-Token`` on unsafe methods).
* With no admin password configured the server is *open to loopback only* (a laptop):
  requests from 127.0.0.1/::1, addressed to a loopback name, that carry no proxy header
  are let in (the admin screens get a session of their own, so forms still carry CSRF
  tokens); anything else gets 403 saying why. A proxy in front would make every
  outsider look local, so any forwarding header (``Forwarded``, ``X-Forwarded-*``,
  ``X-Real-IP``, ``Via``…) is refused on these paths.
* Public: the paths each carrier plug-in declares (``Carrier.public_paths``: Twilio's
  webhooks and media stream, the browser test call's media stream — each checks its
  own signatures and tokens), ``/healthz``, ``/readyz``, ``/metrics``, ``/static/…`` and the login
  page. Their access never rests on "this request is local", so a proxy changes
  nothing for them.
* Before all of that, every request but ``/healthz`` and ``/readyz`` must name this server in ``Host``
  (400 otherwise), and a write or WebSocket handshake that carries ``Origin`` must come
  from one of our pages (403 otherwise): see ``hosts.py``. ``/healthz`` and ``/readyz`` are
  exempt because load balancers probe them by address, and they tell nothing but a
  status, a reason and a count or two.

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
from urllib.parse import quote

from fastapi import HTTPException, Request

from agentplatform.config import Settings
from agentplatform.single_use import MemorySingleUse, SingleUseStore, SingleUseUnavailable
from agentplatform.web.hosts import BadHost, HostPolicy, forwarding_headers, is_loopback_name, \
    split_host
from agentplatform.web.login_throttle import LoginThrottle
from agentplatform.web.passwords import check_hash_format
from agentplatform.web.sessions import COOKIE_NAME, Session, SessionSigner

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
PUBLIC_EXACT = frozenset({"/healthz", "/readyz", "/metrics", "/login", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
# Probed by load balancers by address; answers only "ok" and two counts.
ANY_HOST_PATHS = frozenset({"/healthz", "/readyz"})
API_PREFIXES = ("/api/", "/debug/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOCAL_USER = "local"
OPEN_MODE_MESSAGE = (
    "No admin password is configured, so the admin screens and the API answer only "
    "requests from this machine (loopback). Set ADMIN_PASSWORD_HASH (make one with "
    "`agentplatform hash-password`) to allow logging in from elsewhere.")
LAPTOP_ONLY_MESSAGE = (
    "Open mode (no ADMIN_PASSWORD_HASH) is for a laptop only: a proxy in front of it "
    "would make every outsider look local, so requests relayed by a proxy (Forwarded, "
    "X-Forwarded-*, X-Real-IP, Via…) or addressed to a non-loopback name are refused on "
    "the admin screens and the API. Set ADMIN_PASSWORD_HASH to serve them through a proxy.")


class Access:
    """The access policy and the session signer, built from the settings at start."""

    def __init__(self, settings: Settings, revocations: SingleUseStore | None = None, *,
                 carrier_paths: tuple[str, ...] = (), server_paths: tuple[str, ...] = ()
                 ) -> None:
        """``carrier_paths``: prefixes the carriers check themselves (their
        ``public_paths``); ``server_paths``: those only carriers' servers call,
        signature-checked, where a browser's Origin means nothing."""
        self.public_prefixes = PUBLIC_PREFIXES + _checked_carrier_paths(carrier_paths)
        self.no_origin_prefixes = tuple(server_paths)
        self.user = settings.admin_user
        self.password_hash = settings.admin_password_hash
        if self.password_hash:
            check_hash_format(self.password_hash)  # a typo must not leave the server open
        self.api_key = settings.api_key
        secret = settings.session_secret.encode() if settings.session_secret \
            else secrets.token_bytes(32)
        self.signer = SessionSigner(secret, settings.session_max_age_seconds,
                                    password_hash=self.password_hash)
        self.login_throttle = LoginThrottle()
        # Logged-out sessions, shared by every process (one process only without it).
        self.revocations: SingleUseStore = revocations or MemorySingleUse()
        self.secure_cookies = settings.public_url.startswith("https://")
        self.hosts = HostPolicy.build(public_url=settings.public_url,
                                      allowed_hosts=settings.allowed_hosts,
                                      bind_host=settings.host)

    @property
    def open_mode(self) -> bool:
        return not self.password_hash

    def announce(self) -> None:
        """One line at start saying how the admin side is protected."""
        if self.open_mode:
            log.warning("admin access: %s %s", OPEN_MODE_MESSAGE, LAPTOP_ONLY_MESSAGE)
        else:
            log.info("admin access: login required (user %r); API %s", self.user,
                     "key or session required" if self.api_key else "needs a logged-in session")
        log.info("answering to the host names %s (any other Host gets 400; set "
                 "ALLOWED_HOSTS to add one)", self.hosts.describe())

    async def revoke(self, session: Session) -> None:
        """End ``session`` everywhere: its id is claimed until the cookie would expire.
        Raises ``SingleUseUnavailable`` if the store cannot record it."""
        await self.revocations.claim(session.revocation_id, session.expires)

    async def is_revoked(self, session: Session) -> bool:
        return await self.revocations.is_claimed(session.revocation_id)

    def api_key_matches(self, presented: str) -> bool:
        return bool(self.api_key) and hmac.compare_digest(presented.encode(), self.api_key.encode())

    def cookie_header(self, session: Session | None) -> str:
        """A ``Set-Cookie`` value carrying ``session`` (None: delete the cookie)."""
        value = session.value if session else ""
        max_age = self.signer.max_age if session else 0
        secure = "; Secure" if self.secure_cookies else ""
        return f"{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"


def _checked_carrier_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """A carrier's public prefix must name its own corner, never the screens or the API:
    ``/`` or ``/api`` here would let everyone in, so start-up fails instead."""
    for path in paths:
        if not path.startswith("/") or len(path.strip("/")) == 0 or any(
                guarded.startswith(path) for guarded in (*API_PREFIXES, "/agents", "/login")):
            raise ValueError(f"carrier public path {path!r} would open the admin side; a "
                             "carrier may only make its own path prefix public")
    return tuple(paths)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _not_local(scope: Scope, headers: dict[str, str]) -> str | None:
    """None when the request comes from a browser on this machine, else why not.

    From a loopback address, addressed to a loopback name, and not relayed by a proxy
    (which would make everyone local). A proxy that rewrites ``Host`` to a loopback name
    and adds no header at all cannot be told apart: open mode is for a laptop only."""
    client = scope.get("client")
    if not client or client[0] not in LOOPBACK:
        return OPEN_MODE_MESSAGE
    relayed = forwarding_headers(headers)
    if relayed:
        return f"this request was relayed by a proxy ({', '.join(relayed)}). " \
               + LAPTOP_ONLY_MESSAGE
    try:
        name, _ = split_host(headers.get("host", ""))
    except BadHost:
        name = ""
    if not is_loopback_name(name):
        return f"this request is addressed to {name!r}, not to this machine. " \
               + LAPTOP_ONLY_MESSAGE
    return None


def _presented_key(headers: dict[str, str]) -> str:
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key


class AccessMiddleware:
    """Applies :class:`Access` to every HTTP request and WebSocket handshake."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if scope["path"] not in ANY_HOST_PATHS:
            refusal = self._check_names(scope, headers)
            if refusal is not None:
                await _deny(scope, receive, send, *refusal)
                return
        path = scope["path"]
        if path in PUBLIC_EXACT or path.startswith(self.access.public_prefixes):
            await self.app(scope, receive, send)
            return
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no session
            cookies = SimpleCookie()
        morsel = cookies.get(COOKIE_NAME)
        session = self.access.signer.loads(morsel.value if morsel else None)
        if session is not None:
            try:
                if await self.access.is_revoked(session):
                    session = None  # logged out: as if there were no cookie
            except SingleUseUnavailable as exc:
                log.error("cannot tell whether a session was logged out, refusing it: %s", exc)
                await _deny(scope, receive, send, 503,
                            "sessions cannot be checked right now; try again shortly")
                return
        state = scope.setdefault("state", {})
        state["session"] = session
        state["access"] = self.access
        is_api = scope["path"].startswith(API_PREFIXES)
        decide = self._api if is_api else self._admin
        await decide(scope, receive, send, headers, session, state)

    def _check_names(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, why) when ``Host`` is not ours, or a write / socket comes from
        another site's page; None when the request may go on."""
        try:
            if sum(1 for key, _ in scope.get("headers", []) if key.lower() == b"host") > 1:
                raise BadHost("the request has more than one Host header")
            self.access.hosts.check_host(headers.get("host"))
        except BadHost as exc:
            log.warning("refused %s %s: %s", scope.get("method", "WEBSOCKET"), scope["path"], exc)
            return 400, f"bad Host: {exc}"
        writes = scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS
        if not writes or scope["path"].startswith(self.access.no_origin_prefixes):
            return None
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site request refused"
        origin = headers.get("origin")
        if origin is None:
            return None  # not a browser (browsers send Origin on every write and socket)
        try:
            self.access.hosts.check_origin(origin, headers["host"])
        except BadHost as exc:
            log.warning("refused %s %s: %s", scope.get("method", "WEBSOCKET"), scope["path"], exc)
            return 403, f"cross-site request refused: {exc}"
        return None

    async def _api(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                   session: Session | None, state: dict[str, Any]) -> None:
        presented = _presented_key(headers)
        if presented and self.access.api_key_matches(presented):
            state["auth"] = "api_key"
            await self.app(scope, receive, send)
            return
        if self.access.open_mode:
            why = _not_local(scope, headers)
            if why is not None:
                # Relayed or renamed is a refusal; merely remote may still bring the key.
                remote_only = why is OPEN_MODE_MESSAGE
                if remote_only and self.access.api_key:
                    why = "send the API key in the X-API-Key header"
                await _deny(scope, receive, send, 401 if remote_only else 403, why)
                return
        elif session is None:
            await _deny(scope, receive, send, 401, "send the API key in the X-API-Key header"
                        if self.access.api_key else "log in first")
            return
        if session is not None:
            if scope.get("method", "GET") not in SAFE_METHODS and not hmac.compare_digest(
                    headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()):
                await _deny(scope, receive, send, 403, "missing or wrong X-CSRF-Token header")
                return
            state["auth"] = "session"
        else:
            state["auth"] = "loopback"
        await self.app(scope, receive, send)

    async def _admin(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                     session: Session | None, state: dict[str, Any]) -> None:
        if self.access.open_mode:
            # Even with a session cookie: in open mode every request must be local.
            why = _not_local(scope, headers)
            if why is not None:
                await _deny(scope, receive, send, 403, why)
                return
        if session is not None:
            state["auth"] = "session"
            await self.app(scope, receive, send)
            return
        if self.access.open_mode:
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
