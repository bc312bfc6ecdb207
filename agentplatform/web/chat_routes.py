"""Chat with an agent: the panel page, and one streaming endpoint for the panel
(``/agents/{name}/chat/messages``, session + CSRF) and the API
(``POST /api/agents/{name}/chat``, API key).

The answer streams as NDJSON, one event per line, so a browser ``fetch()`` reader and
``curl -N`` can both follow it::

    {"type": "conversation", "id": "chat_…", "agent": "front-desk", "note": ""}
    {"type": "delta", "text": "Let me "}
    {"type": "tool_call", "id": "…", "name": "check_availability", "arguments": "{…}"}
    {"type": "tool_result", "id": "…", "name": "…", "output": "…", "ok": true, "note": ""}
    {"type": "done", "text": "…the whole answer…"}  (+ "ended": true after end_call; or {"type": "error", …})
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from agentplatform.chat.audio_bridge import speaks_only
from agentplatform.chat.conversations import Conversation, Conversations
from agentplatform.chat.session import (
    ChatDelta, ChatDone, ChatError, ChatEvent, ChatToolCall, ChatToolResult, open_chat,
)
from agentplatform.errors import PlatformError
from agentplatform.web.auth import require_csrf
from agentplatform.web.templating import templates

log = logging.getLogger(__name__)
NDJSON = "application/x-ndjson"

router = APIRouter()
pages = APIRouter(dependencies=[Depends(require_csrf)])


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=8000)
    conversation_id: str | None = None


def conversations(request: Request) -> Conversations:
    state = request.app.state
    found = getattr(state, "conversations", None)
    if found is None:
        found = state.conversations = Conversations()
    return found


def event_json(event: ChatEvent) -> dict[str, Any]:
    if isinstance(event, ChatDelta):
        return {"type": "delta", "text": event.text}
    if isinstance(event, ChatToolCall):
        return {"type": "tool_call", "id": event.call_id, "name": event.name,
                "arguments": event.arguments}
    if isinstance(event, ChatToolResult):
        return {"type": "tool_result", "id": event.call_id, "name": event.name,
                "output": event.output, "ok": event.ok, "note": event.note}
    if isinstance(event, ChatDone):
        # "ended": the agent used end_call, so the conversation is over (only when true).
        return {"type": "done", "text": event.text, **({"ended": True} if event.ended else {})}
    return {"type": "error", "message": event.message}


async def _conversation(request: Request, name: str, conversation_id: str | None) -> Conversation:
    platform = request.app.state.platform
    await platform.store.refresh_async()
    agent = platform.store.get(name)
    if agent is None:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r} is loaded")

    async def opener(new_id: str):
        return await open_chat(agent.spec, catalog=platform.catalog, settings=platform.settings,
                               http=platform.http, conversation_id=new_id)

    try:
        return await conversations(request).get_or_open(conversation_id, name, opener)
    except PlatformError as exc:
        raise HTTPException(status_code=502, detail=f"cannot chat with {name}: {exc}") from None
    except OSError as exc:
        raise HTTPException(status_code=502, detail=f"cannot reach the model: {exc}") from None


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


async def _stream(conversation: Conversation, message: str) -> AsyncIterator[bytes]:
    yield _line({"type": "conversation", "id": conversation.id, "agent": conversation.agent,
                 "greeting": conversation.chat.greeting, "note": conversation.chat.slow_note})
    try:
        async for event in conversation.chat.ask(message):
            yield _line(event_json(event))
    except Exception as exc:  # a broken engine must end the stream with a reason
        log.exception("chat %s failed", conversation.id)
        yield _line({"type": "error", "message": f"the chat failed: {exc}"})


async def _chat(request: Request, name: str, body: ChatRequest) -> StreamingResponse:
    conversation = await _conversation(request, name, body.conversation_id)
    return StreamingResponse(_stream(conversation, body.message), media_type=NDJSON,
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/api/agents/{name}/chat")
async def api_chat(request: Request, name: str, body: ChatRequest) -> StreamingResponse:
    """Send a message (in a conversation, when ``conversation_id`` is given); the answer
    streams back as NDJSON."""
    return await _chat(request, name, body)


@pages.post("/agents/{name}/chat/messages")
async def panel_chat(request: Request, name: str, body: ChatRequest) -> StreamingResponse:
    return await _chat(request, name, body)


@pages.get("/agents/{name}/chat", response_class=HTMLResponse)
async def chat_page(request: Request, name: str) -> HTMLResponse:
    platform = request.app.state.platform
    await platform.store.refresh_async()
    agent = platform.store.get(name)
    if agent is None:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r} is loaded")
    return templates.TemplateResponse(request, "agent_chat.html", {
        "name": name, "agent": agent, "through_audio": speaks_only(agent.spec, platform.catalog),
    })


router.include_router(pages)
