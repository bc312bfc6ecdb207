"""Numbers and carriers: for each agent its numbers, the exact webhook URLs Twilio
needs, the SIP trunk's settings, and whether each carrier's and model's credentials
are present; with Twilio credentials, one button points a number at this server.

Nothing here shows a secret: only whether it is set.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from agentplatform.agents.keys import missing_keys
from agentplatform.carriers.twilio.numbers import point_number
from agentplatform.carriers.twilio.routes import STATUS_PATH, VOICE_PATH, stream_url
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.web.auth import require_csrf
from agentplatform.web.templating import templates

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(require_csrf)])


def webhook_urls(settings: Settings, request: Request) -> dict[str, str]:
    """What to paste into Twilio: from PUBLIC_URL, else the address this page was
    opened with (``guessed``: then Twilio may not be able to reach it)."""
    base = settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    host = request.headers.get("host", "")
    return {"voice": base + VOICE_PATH, "status": base + STATUS_PATH,
            "media": stream_url(settings, host),
            "guessed": "" if settings.public_url else base}


def _present(settings: Settings, name: str) -> bool:
    return bool(str(getattr(settings, name, "") or "").strip())


def carrier_settings(settings: Settings) -> dict[str, Any]:
    """Each carrier's settings as the page lists them: values that are addresses,
    and set/not set for secrets."""
    return {
        "twilio": {"account_sid": _present(settings, "twilio_account_sid"),
                   "auth_token": _present(settings, "twilio_auth_token"),
                   "api": settings.twilio_api_base_url,
                   "public_url": settings.public_url},
        "sip": {"enabled": _present(settings, "sip_listen"), "listen": settings.sip_listen,
                "public_address": settings.sip_public_address or settings.sip_listen,
                "rtp_ports": settings.sip_rtp_ports, "allowed_peers": settings.sip_allowed_peers,
                "outbound_uri": settings.sip_outbound_uri,
                "username": _present(settings, "sip_username"),
                "password": _present(settings, "sip_password"),
                "from_number": settings.sip_from_number},
    }


def _page(request: Request, result: dict[str, str] | None = None,
          status: int = 200) -> HTMLResponse:
    platform = request.app.state.platform
    settings = platform.settings
    agents = [{"name": a.name, "numbers": list(a.spec.phone_numbers),
               "missing": missing_keys(a.spec, platform.catalog, settings)}
              for a in sorted(platform.store.agents.values(), key=lambda a: a.name)]
    carriers = carrier_settings(settings)
    return templates.TemplateResponse(request, "numbers.html", {
        "agents": agents, "urls": webhook_urls(settings, request), "carriers": carriers,
        "can_point": carriers["twilio"]["account_sid"] and carriers["twilio"]["auth_token"],
        "result": result,
    }, status_code=status)


@router.get("/numbers", response_class=HTMLResponse)
async def numbers_page(request: Request) -> HTMLResponse:
    await request.app.state.platform.store.refresh_async()
    return _page(request)


@router.post("/numbers/twilio-webhook", response_class=HTMLResponse)
async def point_at_this_server(request: Request, number: str = Form("")) -> HTMLResponse:
    """Set the number's voice webhook and status callback at Twilio to this server's."""
    platform = request.app.state.platform
    settings: Settings = platform.settings
    known = {n for a in platform.store.agents.values() for n in a.spec.phone_numbers}
    if number not in known:
        return _page(request, {"number": number, "error": "no agent answers this number; "
                               "add it to an agent first"}, 422)
    if not settings.public_url:
        return _page(request, {"number": number, "error": "set PUBLIC_URL to the https address "
                               "Twilio reaches this server on first"}, 422)
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return _page(request, {"number": number, "error": "set TWILIO_ACCOUNT_SID and "
                               "TWILIO_AUTH_TOKEN first"}, 422)
    urls = webhook_urls(settings, request)
    try:
        held = await point_number(settings.twilio_account_sid, settings.twilio_auth_token,
                                  number, voice_url=urls["voice"], status_callback=urls["status"],
                                  api_base_url=settings.twilio_api_base_url)
    except CarrierError as exc:
        log.warning("pointing %s at this server failed: %s", number, exc)
        return _page(request, {"number": number, "error": str(exc)}, 502)
    log.info("Twilio number %s now calls %s", number, held.voice_url)
    return _page(request, {"number": number, "ok": f"Twilio now sends calls to {number} to "
                           f"{held.voice_url}, status to {held.status_callback}."})
