"""Everything the admin side adds to the app, in one call from ``create_app``: the
access middleware, the login, agent, chat and browser-call screens, and static files."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from agentplatform.chat.conversations import Conversations

from agentplatform.config import Settings
from agentplatform.web.auth import Access, AccessMiddleware
from agentplatform.web.templating import STATIC_DIR


def install_admin(app: FastAPI, settings: Settings, *, public_paths: tuple[str, ...] = (),
                  server_paths: tuple[str, ...] = ()) -> Access:
    """Wire the admin side into ``app``; returns the access policy (announce it at start).
    ``public_paths`` / ``server_paths``: what the enabled carriers declare."""
    from agentplatform.web.agents_admin import router as agents_router
    from agentplatform.web.browser_call import router as browser_call_router
    from agentplatform.web.chat_routes import router as chat_router
    from agentplatform.web.dial_admin import router as dial_admin_router
    from agentplatform.web.live_calls import router as live_calls_router
    from agentplatform.web.numbers_admin import router as numbers_router
    from agentplatform.web.scenarios_admin import router as scenarios_router
    from agentplatform.web.login import router as login_router

    access = Access(settings, revocations=getattr(app.state, "single_use", None),
                    carrier_paths=public_paths, server_paths=server_paths)
    app.state.access = access
    app.add_middleware(AccessMiddleware, access=access)
    app.include_router(login_router)
    app.include_router(agents_router)
    app.include_router(chat_router)
    app.include_router(browser_call_router)
    app.include_router(dial_admin_router)
    app.include_router(live_calls_router)
    app.include_router(numbers_router)
    app.include_router(scenarios_router)
    _close_chats_at_shutdown(app)
    _watch_hang_ups(app)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
        app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    return access


def _watch_hang_ups(app: FastAPI) -> None:
    """While the app runs, end this process's calls that an admin hung up elsewhere."""
    from agentplatform.web.live_calls import watch_hang_ups

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            watcher = asyncio.create_task(watch_hang_ups(app.state.platform, app.state.engine))
            try:
                yield state
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    app.router.lifespan_context = lifespan


async def _favicon() -> FileResponse:
    """Browsers ask for /favicon.ico before reading a page's icon link."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


def _close_chats_at_shutdown(app: FastAPI) -> None:
    """Open chat conversations hold model sessions: close them when the app stops."""
    app.state.conversations = Conversations()
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            try:
                yield state
            finally:
                await app.state.conversations.close_all()

    app.router.lifespan_context = lifespan
