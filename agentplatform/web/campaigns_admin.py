"""Admin screens for campaigns: the list, a create form with the CSV upload, and a
campaign's page (progress, outcomes by reason, contacts, pause/resume/cancel).

Creating goes through ``campaigns.create`` like the API; a refused upload comes back
with each field's problem beside it and every bad row by line, nothing stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from agentplatform.campaigns import store
from agentplatform.campaigns.create import NUMBERS, CampaignInvalid, create_campaign
from agentplatform.carriers.dialing import MachineDetection
from agentplatform.web.auth import require_csrf
from agentplatform.web.campaigns_api import ACTIONS, steer, upload_file_bytes
from agentplatform.web.templating import render

router = APIRouter(dependencies=[Depends(require_csrf)])

FORM_DEFAULTS: dict[str, Any] = {
    "name": "", "agent": "", "carrier": "", "from": "", "machine_detection": "off",
    "voicemail_message": "", "hours_start": "09:00", "hours_end": "20:00",
    "default_time_zone": "UTC", **{k: f"{v[2]:g}" for k, v in NUMBERS.items()},
}


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns_page(request: Request) -> HTMLResponse:
    engine = request.app.state.engine
    return await render(request, "campaigns.html",
                        lambda: {"campaigns": store.list_campaigns(engine)})


def _form_context(request: Request, values: dict[str, Any],
                  problem: CampaignInvalid | None = None) -> dict[str, Any]:
    platform = request.app.state.platform
    return {
        "values": values, "agents": sorted(platform.store.agents),
        "carriers": [c.name for c in request.app.state.carriers if c.can_dial],
        "detections": [m.value for m in MachineDetection],
        "errors": problem.fields if problem else {},
        "rows": problem.rows.as_list() if problem and problem.rows else [],
    }


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new_campaign_form(request: Request, agent: str = "") -> HTMLResponse:
    await request.app.state.platform.store.refresh_async()
    values = {**FORM_DEFAULTS, "agent": agent}
    return await render(request, "campaign_new.html", lambda: _form_context(request, values))


@router.post("/campaigns/new")
async def create_from_form(request: Request) -> Response:
    form = await request.form(max_files=1, max_fields=50)
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    upload = form.get("contacts")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise CampaignInvalid({"contacts": "choose a CSV file with a 'number' column"})
        data = await upload_file_bytes(upload)
        campaign_id, _ = await create_campaign(
            request.app.state.engine, request.app.state.platform.store,
            request.app.state.carriers, {**values, "start": values.get("start", "")},
            csv_data=data)
    except CampaignInvalid as exc:
        merged, problem = {**FORM_DEFAULTS, **values}, exc
        return await render(request, "campaign_new.html",
                            lambda: _form_context(request, merged, problem), status_code=422)
    return RedirectResponse(f"/campaigns/{campaign_id}?saved=created", status_code=303)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(request: Request, campaign_id: str,
                        saved: str | None = None) -> HTMLResponse:
    engine = request.app.state.engine
    detail = await asyncio.to_thread(store.campaign_detail, engine, campaign_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no campaign {campaign_id[:64]}")
    return await render(request, "campaign.html", lambda: {"c": detail, "saved": saved})


@router.post("/campaigns/{campaign_id}/{action}")
async def change_from_page(request: Request, campaign_id: str, action: str) -> Response:
    if action not in ACTIONS:
        raise HTTPException(status_code=404, detail=f"no action {action[:20]!r}")
    status = await steer(request, campaign_id, action)
    return RedirectResponse(f"/campaigns/{campaign_id}?saved={status}", status_code=303)
