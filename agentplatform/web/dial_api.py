"""``POST /api/calls``: place an outbound call (API key or admin session, like all of
``/api``; the access middleware decides before this runs).

    {"agent", "to", "from"?, "carrier"?, "params"?, "machine_detection"?,
     "voicemail_message"?}  ->  202 {"call_id", "status": "queued"}

A request that cannot be placed gets a status that says whose move it is: 422 the
request is wrong, 409 the agent's spend controls refuse it now (busy, over
budget), 503 the platform cannot dial now (no carrier can, shutting down, the
carrier refused). The body is ``{"detail", "reason", "call_id"?}``; ``call_id`` is
there when the refusal was recorded. ``GET /api/calls/{id}`` then shows
``status`` (queued, ringing, in_progress, ended) and ``end_reason``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from agentplatform.carriers.dialing import MachineDetection
from agentplatform.outbound import DialRefusal, DialRefused, DialRequest
from agentplatform.outbound.request import machine_detection_of

router = APIRouter()

MAX_BODY_BYTES = 16 * 1024
FIELDS = frozenset({"agent", "to", "from", "carrier", "params", "machine_detection",
                    "voicemail_message"})
TEXT_FIELDS = ("agent", "to", "from", "carrier", "voicemail_message")
# DialRefused.reason -> HTTP status.
STATUS_OF_REFUSAL: dict[str, int] = {
    DialRefusal.INVALID: 422,
    DialRefusal.UNKNOWN_AGENT: 422,
    DialRefusal.BUSY: 409,
    DialRefusal.OVER_BUDGET: 409,
    DialRefusal.CARRIER_UNAVAILABLE: 503,
    DialRefusal.DRAINING: 503,
    DialRefusal.FAILED: 503,
}


class BadDialBody(ValueError):
    """The body is not a dial request; the message says what is wrong."""


def _answer(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def parse_dial_body(raw: bytes) -> DialRequest:
    """A JSON body as a ``DialRequest``; ``BadDialBody`` says what is wrong. Values
    are checked for type here, for content by the dial service."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadDialBody(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadDialBody(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadDialBody("the body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadDialBody(f"unknown field {unknown[0][:40]!r}; the fields are "
                          f"{', '.join(sorted(FIELDS))}")
    for name in TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadDialBody(f"{name} must be text")
    for name in ("agent", "to"):
        if not body.get(name):
            raise BadDialBody(f"{name} is required")
    detection = machine_detection_of(body.get("machine_detection"))
    if not isinstance(detection, MachineDetection):
        raise BadDialBody(detection)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadDialBody("params must be an object of names to text values")
    return DialRequest(
        agent=body["agent"], to_number=body["to"], from_number=body.get("from") or "",
        carrier=body.get("carrier") or "", params=params, machine_detection=detection,
        voicemail_message=body.get("voicemail_message") or "",
    )


@router.post("/api/calls")
async def place_call(request: Request) -> Response:
    try:
        dial = parse_dial_body(await request.body())
    except BadDialBody as exc:
        return _answer(422, {"detail": str(exc), "reason": DialRefusal.INVALID})
    dialer = request.app.state.platform.dialer
    try:
        call_id = await dialer.dial(dial)
    except DialRefused as refused:
        body: dict[str, Any] = {"detail": refused.message, "reason": refused.reason}
        if refused.call_id:
            body["call_id"] = refused.call_id
        return _answer(STATUS_OF_REFUSAL.get(refused.reason, 503), body)
    return _answer(202, {"call_id": call_id, "status": "queued"})
