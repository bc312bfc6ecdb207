"""HTTP webhook tools: the model's arguments go to a URL, the reply goes back.

POST, PUT and PATCH send the arguments as a JSON body; GET and DELETE send them
as query parameters. Secrets never live in the agent file: each header's value
is read from the environment variable the tool names, at call time, and only from
a variable the operator allowed (``TOOL_SECRET_*`` or ``TOOL_ENV_ALLOWLIST``; never
the platform's own settings).

What comes back is text for the model to read, so it is kept small: a JSON
reply is re-encoded compactly, and any reply is cut to ``MAX_OUTPUT_CHARS``.
Reading stops after ``MAX_READ_BYTES`` so a huge or endless reply cannot eat
memory. Redirects are not followed, because a redirect could point past the
network guard to a private address.

The pure functions (``build_request``, ``query_params``, ``render_body``,
``pin_to_address``) do no I/O; ``call_webhook`` is the one that talks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from agentplatform.agents import envpolicy
from agentplatform.agents.spec import WebhookTool
from agentplatform.errors import ToolError
from agentplatform.tools.netguard import IPAddress, Resolver, resolve_allowed, system_resolver

MAX_OUTPUT_CHARS = 8000
MAX_READ_BYTES = 64 * 1024
_ERROR_BODY_CHARS = 300
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TRUNCATED = " … [response truncated]"


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One webhook call, fully decided before any socket opens."""

    method: str
    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    params: list[tuple[str, str]] = field(default_factory=list)
    json_body: dict[str, Any] | None = None


# ---------------------------------------------------------------- pure helpers


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def query_params(arguments: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Arguments as query pairs: lists repeat the key, objects become compact
    JSON, booleans are ``true``/``false``, and nulls are left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in arguments.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            pairs.extend((key, _param_text(item)) for item in value if item is not None)
        else:
            pairs.append((key, _param_text(value)))
    return pairs


def env_headers(headers_from_env: Mapping[str, str], env: Mapping[str, str],
                allowed: frozenset[str] = frozenset()) -> dict[str, str]:
    """Header values read from the environment; a variable the operator did not allow
    (see ``agents.envpolicy``), or a missing or empty one, is a ``ToolError`` naming
    the variable (never its value). Validation refuses such files already; this
    holds for a spec that reached the runner some other way."""
    headers: dict[str, str] = {}
    for header, variable in headers_from_env.items():
        refused = envpolicy.refusal(variable, allowed)
        if refused:
            raise ToolError(f"header {header}: {refused}")
        value = env.get(variable, "")
        if not value:
            raise ToolError(f"environment variable {variable} (for header {header}) is not set")
        headers[header] = value
    return headers


def build_request(
    tool: WebhookTool, arguments: Mapping[str, Any], env: Mapping[str, str],
    allowed_env: frozenset[str] = frozenset(),
) -> WebhookRequest:
    """Decide method, URL, headers and payload for one call of ``tool``."""
    try:
        url = httpx.URL(tool.url)
    except httpx.InvalidURL as exc:
        raise ToolError(f"invalid URL {tool.url!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ToolError(f"URL {tool.url!r} must be an absolute http or https URL")
    headers = env_headers(tool.headers_from_env, env, allowed_env)
    if tool.method in _BODY_METHODS:
        return WebhookRequest(tool.method, url, headers, json_body=dict(arguments))
    # httpx replaces a URL's query when given params, so keep the URL's own pairs.
    params = list(url.params.multi_items()) + query_params(arguments)
    return WebhookRequest(tool.method, url, headers, params=params)


def pin_to_address(url: httpx.URL, address: IPAddress) -> tuple[httpx.URL, str]:
    """``url`` rewritten to connect to ``address``, and the Host header that
    keeps the original name (so virtual hosting still works)."""
    host_header = url.netloc.decode("ascii")
    return url.copy_with(host=str(address)), host_header


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + _TRUNCATED


def render_body(body: bytes, content_type: str, *, complete: bool, encoding: str) -> str:
    """The reply as text for the model: compact JSON when it is JSON and was
    read whole, otherwise the decoded text; cut to ``MAX_OUTPUT_CHARS``."""
    text = body.decode(encoding, errors="replace")
    if complete and "json" in content_type.lower():
        with contextlib.suppress(ValueError):  # not JSON after all: pass it as text
            text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    if not complete and len(text) <= MAX_OUTPUT_CHARS:
        return text + _TRUNCATED
    return truncate(text)


# ---------------------------------------------------------------- the call


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """Up to ``MAX_READ_BYTES`` of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_READ_BYTES:
            return b"".join(chunks)[:MAX_READ_BYTES], False
    return b"".join(chunks), True


def _status_error(response: httpx.Response, body: str) -> ToolError:
    code = response.status_code
    if response.is_redirect:
        location = response.headers.get("location", "?")
        return ToolError(f"HTTP {code} redirect to {location} (redirects are not followed)")
    detail = f": {truncate(body, _ERROR_BODY_CHARS)}" if body.strip() else ""
    return ToolError(f"HTTP {code} {response.reason_phrase}{detail}")


async def _send_once(
    client: httpx.AsyncClient,
    request: WebhookRequest,
    url: httpx.URL,
    extra_headers: Mapping[str, str],
    timeout: float,
) -> str:
    async with client.stream(
        request.method,
        url,
        headers={**request.headers, **extra_headers},
        params=request.params or None,
        json=request.json_body,
        timeout=timeout,
        follow_redirects=False,
    ) as response:
        raw, complete = await _read_capped(response)
        encoding = response.encoding or "utf-8"
        text = render_body(
            raw, response.headers.get("content-type", ""), complete=complete, encoding=encoding
        )
        if not response.is_success:
            raise _status_error(response, text)
        if not text.strip():
            return f"Done (HTTP {response.status_code}, no content)."
        return text


async def _send(
    client: httpx.AsyncClient,
    request: WebhookRequest,
    addresses: list[IPAddress],
    timeout: float,
) -> str:
    """Send to a checked address. Plain HTTP connects to each checked address in
    turn (so no second lookup can rebind the name); HTTPS connects by name and
    relies on certificate verification, see ``netguard``."""
    if request.url.scheme == "https":
        targets = [(request.url, {})]
    else:
        targets = []
        for address in addresses:
            url, host = pin_to_address(request.url, address)
            targets.append((url, {"Host": host}))
    last_error: httpx.ConnectError | None = None
    for url, extra in targets:
        try:
            return await _send_once(client, request, url, extra, timeout)
        except httpx.ConnectError as exc:
            last_error = exc
    raise ToolError(f"could not connect to {request.url.host}: {last_error}")


async def call_webhook(
    tool: WebhookTool,
    arguments: Mapping[str, Any],
    *,
    client: httpx.AsyncClient,
    env: Mapping[str, str],
    resolver: Resolver = system_resolver,
    allowed_env: frozenset[str] = frozenset(),
) -> str:
    """Call ``tool`` with ``arguments``; the reply text for the model.

    Every failure (missing header variable, refused address, timeout, HTTP
    error status, connection error) is a ``ToolError`` with a message fit to be
    read back to the model. The whole call, lookup included, gets the tool's
    ``timeout_seconds``.
    """
    request = build_request(tool, arguments, env, allowed_env)
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(tool.timeout_seconds):
            addresses = await resolve_allowed(
                request.url.host,
                port,
                allow_private=tool.allow_private_network,
                resolver=resolver,
            )
            return await _send(client, request, addresses, tool.timeout_seconds)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ToolError(f"no reply within {tool.timeout_seconds:g} seconds") from exc
    except httpx.HTTPError as exc:
        raise ToolError(f"request failed: {exc}") from exc
