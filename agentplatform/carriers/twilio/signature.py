"""``X-Twilio-Signature`` checks, for form webhooks and the media WebSocket upgrade.

The signature covers the exact URL Twilio requested. Behind a TLS-terminating
proxy our request URL says ``http://internal-host``, not what Twilio signed, so
when ``public_url`` is configured the URL is rebuilt from it. The HMAC itself is
the ``twilio`` package's ``RequestValidator``; we never re-implement it.

With no auth token there is nothing to check against, so the routes refuse
everything (fail closed) and ``announce`` says so at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.datastructures import URL
from starlette.requests import HTTPConnection
from twilio.request_validator import RequestValidator

from agentplatform.config import Settings
from agentplatform.errors import PlatformError

SIGNATURE_HEADER = "X-Twilio-Signature"

log = logging.getLogger(__name__)


def public_request_url(request_url: URL, public_url: str) -> str:
    """The URL Twilio used to reach an HTTP endpoint: ``public_url``'s scheme and
    host with the request's path and query, or the request URL when unset."""
    if not public_url:
        return str(request_url)
    base = urlsplit(public_url)
    prefix = base.path.rstrip("/")
    return urlunsplit((base.scheme, base.netloc, prefix + request_url.path, request_url.query, ""))


def stream_upgrade_url(request_url: URL, host_header: str, public_url: str) -> str:
    """The URL Twilio signs on the media WebSocket upgrade: ``wss://host/path``.

    Twilio's own server helpers sign ``wss://<host><path>`` and pass the query as
    the params; that part is not confirmed elsewhere, so it is kept in this one
    function, easy to change.
    """
    if public_url:
        base = urlsplit(public_url)
        host, prefix = base.netloc, base.path.rstrip("/")
    else:
        host, prefix = host_header or request_url.netloc, ""
    return f"wss://{host}{prefix}{request_url.path}"


def is_valid(auth_token: str, url: str, params: Mapping[str, Any], signature: str | None) -> bool:
    """True when ``signature`` is Twilio's signature of ``url`` + ``params``.

    ``params`` may be a multi-dict (repeated form fields are all signed)."""
    if not signature:
        return False
    try:
        return bool(RequestValidator(auth_token).validate(url, params, signature))
    except (TypeError, ValueError) as exc:
        log.info("signature check failed on malformed input: %r", exc)
        return False


def stream_upgrade_is_valid(auth_token: str, conn: HTTPConnection, public_url: str) -> bool:
    """Check the signature on a media WebSocket upgrade (URL + query params, see
    ``stream_upgrade_url``)."""
    url = stream_upgrade_url(conn.url, conn.headers.get("host", ""), public_url)
    return is_valid(auth_token, url, dict(conn.query_params), conn.headers.get(SIGNATURE_HEADER))


def sign(auth_token: str, url: str, params: Mapping[str, Any] | None = None) -> str:
    """Compute the signature Twilio would send; for simulators and tests."""
    return RequestValidator(auth_token).compute_signature(url, dict(params or {}))


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def announce(settings: Settings) -> None:
    """Say at start-up when Twilio cannot be reached: no auth token means every
    Twilio endpoint refuses, rather than accepting unsigned requests."""
    if settings.insecure_skip_twilio_signature:
        log.warning("INSECURE_SKIP_TWILIO_SIGNATURE is set: Twilio signatures are NOT "
                    "checked; anyone who can reach /twilio/* can place calls (development "
                    "on a loopback host only)")
    elif not settings.twilio_auth_token:
        log.warning("Twilio is disabled until TWILIO_AUTH_TOKEN is set: /twilio/voice, "
                    "/twilio/status and /twilio/media refuse every request")


def check_bind_host(settings: Settings, host: str) -> None:
    """Refuse to serve with signatures switched off on anything but loopback."""
    if settings.insecure_skip_twilio_signature and host not in LOOPBACK_HOSTS:
        raise PlatformError(
            f"INSECURE_SKIP_TWILIO_SIGNATURE is set and the server would listen on {host!r}: "
            "unsigned Twilio requests are only allowed on a loopback host (127.0.0.1, ::1, "
            "localhost). Set TWILIO_AUTH_TOKEN and unset INSECURE_SKIP_TWILIO_SIGNATURE.")
