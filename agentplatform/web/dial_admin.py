"""The agent page's "Call a number" form: places a call through the dial service.

A placed call opens its call page (status queued, then ringing, in progress,
ended); a refused one comes back to the form with the reason and what was typed.
CSRF as every admin form.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentplatform.carriers.dialing import MachineDetection
from agentplatform.outbound import DialRefused, DialRequest
from agentplatform.web.auth import require_csrf
from agentplatform.web.dial_api import STATUS_OF_REFUSAL
from agentplatform.web.templating import templates

router = APIRouter(dependencies=[Depends(require_csrf)])


class BadParams(ValueError):
    pass


def params_from_lines(text: str) -> dict[str, str]:
    """``name=value`` per line (blank lines skipped) as params; ``BadParams`` says which
    line is not."""
    params: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise BadParams(f"params line {number} is not name=value")
        params[name.strip()] = value.strip()
    return params


def _page(request: Request, name: str, values: dict[str, Any], error: str,
          status: int) -> HTMLResponse:
    return templates.TemplateResponse(request, "agent_dial.html", {
        "name": name, "values": values, "error": error,
        "modes": [m.value for m in MachineDetection]}, status_code=status)


@router.get("/agents/{name}/dial", response_class=HTMLResponse)
async def dial_form(request: Request, name: str) -> HTMLResponse:
    return _page(request, name, {}, "", 200)


@router.post("/agents/{name}/dial")
async def dial_number(request: Request, name: str) -> Response:
    form = await request.form()
    values = {key: str(form.get(key, "")).strip() for key in
              ("to", "from", "carrier", "machine_detection", "voicemail_message", "params")}
    try:
        detection = MachineDetection(values["machine_detection"] or "off")
        dial = DialRequest(agent=name, to_number=values["to"], from_number=values["from"],
                           carrier=values["carrier"], params=params_from_lines(values["params"]),
                           machine_detection=detection,
                           voicemail_message=values["voicemail_message"])
        call_id = await request.app.state.platform.dialer.dial(dial)
    except ValueError as exc:  # BadParams, or a machine_detection not on the list
        return _page(request, name, values, str(exc), 422)
    except DialRefused as refused:
        return _page(request, name, values, refused.message,
                     STATUS_OF_REFUSAL.get(refused.reason, 503))
    return RedirectResponse(f"/calls/{call_id}", status_code=303)


__all__ = ["params_from_lines", "router"]
