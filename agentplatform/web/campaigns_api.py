"""The campaigns REST API: create (CSV upload or JSON), list, read, pause/resume/cancel.

``POST /api/campaigns`` takes either ``multipart/form-data`` (the settings as fields,
the CSV as the ``contacts`` file) or JSON (the settings, and ``contacts`` as a list
of ``{"number", "params"}`` or ``csv`` as text). A refused campaign answers 422 with
every field and every bad row (by line); nothing is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.datastructures import UploadFile

from agentplatform.campaigns import store
from agentplatform.campaigns.contacts_csv import MAX_UPLOAD_BYTES
from agentplatform.campaigns.create import CampaignInvalid, create_campaign

router = APIRouter()

# Room for the settings fields and the multipart framing around the file.
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
ACTIONS = frozenset(store.TRANSITIONS)


def _json(body: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


async def read_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"the upload is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status_code=413, detail=f"the upload is over {limit} bytes")
    return bytes(body)


async def upload_file_bytes(upload: UploadFile, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(status_code=413, detail=f"the CSV file is over {limit} bytes")
    return data


@router.post("/api/campaigns")
async def create(request: Request) -> Response:
    platform = request.app.state.platform
    kind = request.headers.get("content-type", "")
    csv_data: bytes | None = None
    items: object = None
    values: dict[str, Any]
    if kind.startswith("multipart/form-data"):
        if request.headers.get("content-length", "").isdigit() and \
                int(request.headers["content-length"]) > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"the upload is over {MAX_BODY_BYTES} "
                                                        "bytes")
        form = await request.form(max_files=1, max_fields=50)
        upload = form.get("contacts")
        if not isinstance(upload, UploadFile):
            return _json(CampaignInvalid({"contacts": "attach the CSV as the 'contacts' "
                                                      "file"}).as_dict(), 422)
        csv_data = await upload_file_bytes(upload)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
    elif kind.startswith("application/json"):
        try:
            body = orjson.loads(await read_limited(request))
        except orjson.JSONDecodeError as exc:
            raise HTTPException(status_code=400, detail=f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail="the body must be a JSON object")
        values = body
        if isinstance(body.get("csv"), str):
            csv_data = body["csv"].encode("utf-8")
        else:
            items = body.get("contacts")
    else:
        raise HTTPException(status_code=415, detail="send multipart/form-data with a "
                                                    "'contacts' CSV file, or JSON")
    try:
        campaign_id, count = await create_campaign(
            request.app.state.engine, platform.store, request.app.state.carriers, values,
            csv_data=csv_data, items=items)
    except CampaignInvalid as exc:
        return _json(exc.as_dict(), 422)
    detail = await asyncio.to_thread(store.campaign_detail, request.app.state.engine,
                                     campaign_id, 0)
    return _json({"id": campaign_id, "status": detail["status"] if detail else "draft",
                  "contacts": count}, 201)


@router.get("/api/campaigns")
async def list_all(request: Request) -> Response:
    engine = request.app.state.engine
    return await asyncio.to_thread(lambda: _json({"campaigns": store.list_campaigns(engine)}))


@router.get("/api/campaigns/{campaign_id}")
async def get_one(request: Request, campaign_id: str) -> Response:
    """Settings, status, progress, outcomes by reason, and the contacts (first 500)."""
    engine = request.app.state.engine

    def load() -> Response | None:
        detail = store.campaign_detail(engine, campaign_id)
        return None if detail is None else _json(detail)

    found = await asyncio.to_thread(load)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no campaign {campaign_id[:64]}")
    return found


async def steer(request: Request, campaign_id: str, action: str) -> str:
    """Pause, resume or cancel; 404 / 409 as HTTP errors. A pause stops new dials at
    once; calls already on the line go on."""
    try:
        return await asyncio.to_thread(store.set_status, request.app.state.engine,
                                       campaign_id, action)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no campaign {campaign_id[:64]}") \
            from None
    except store.CampaignConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@router.post("/api/campaigns/{campaign_id}/{action}")
async def change(request: Request, campaign_id: str, action: str) -> Response:
    if action not in ACTIONS:
        raise HTTPException(status_code=404, detail=f"no action {action[:20]!r}; "
                                                    f"one of {', '.join(sorted(ACTIONS))}")
    status = await steer(request, campaign_id, action)
    return _json({"id": campaign_id, "status": status})
