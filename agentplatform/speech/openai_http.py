"""What OpenAI's audio endpoints answer when they refuse, turned into platform errors.

Both endpoints (transcriptions, speech) answer a refusal with the same JSON body,
``{"error": {"message", "type", "param", "code"}}``; this module reads it so the
message a user sees is OpenAI's own, prefixed with which service said it.
"""

from __future__ import annotations

import httpx
import orjson

from agentplatform.errors import CredentialsError, ModelError

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def error_message(body: bytes) -> str:
    """OpenAI's error message from a response body, or the start of the body itself."""
    try:
        data = orjson.loads(body)
        message = data["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return body[:200].decode("utf-8", "replace") or "no details"


def raise_for_status(label: str, status: int, body: bytes) -> None:
    """Raise the platform error for a refused request; return quietly on success."""
    if status < 400:
        return
    message = error_message(body)
    if status in (401, 403):
        raise CredentialsError(f"{label} refused the key (HTTP {status}): {message}")
    raise ModelError(f"{label} answered HTTP {status}: {message}")


def unreachable(label: str, url: str, exc: httpx.HTTPError) -> ModelError:
    """The error for a request that got no answer (DNS, refused, timeout, cut)."""
    return ModelError(f"{label} at {url} did not answer: {type(exc).__name__}: {exc}")
