"""The FastAPI application: one lifespan owns every shared client; routers do the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI

from agentplatform.agents.store import AgentStore
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.bridge.metrics import METRICS
from agentplatform.carriers.base import CallAudio
from agentplatform.carriers.twilio.routes import build_router as twilio_router
from agentplatform.catalog import Catalog, load_catalog
from agentplatform.config import Settings, get_settings
from agentplatform.records import EndReason
from agentplatform.storage.database import create_tables, make_engine
from agentplatform.storage.writer import CallWriter

log = logging.getLogger(__name__)

# Twilio call statuses after which no stream can still be live.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
MISSING_AGENT_MESSAGE = "Sorry, this number is not in service right now. Goodbye."


@dataclass
class Platform:
    """Everything the routes share; built once by the lifespan."""

    settings: Settings
    catalog: Catalog
    store: AgentStore
    writer: CallWriter
    http: httpx.AsyncClient
    calls: set[asyncio.Task[object]] = field(default_factory=set)

    def lookup_agent(self, number: str) -> str | None:
        self.store.refresh()  # stat-only: picks up edited agent files per call
        agent = self.store.for_number(number)
        return agent.name if agent else None

    async def handle_call(self, audio: CallAudio) -> None:
        loaded = self.store.get(audio.info.agent)
        if loaded is None:
            log.warning("call %s: agent %r is gone", audio.info.call_id, audio.info.agent)
            await audio.hang_up(say=MISSING_AGENT_MESSAGE)
            return
        deps = CallDeps(settings=self.settings, catalog=self.catalog, recorder=self.writer,
                        http=self.http)
        task = asyncio.current_task()
        assert task is not None
        self.calls.add(task)
        try:
            await CallSession(audio, loaded.spec, deps).run()
        finally:
            self.calls.discard(task)

    def on_call_status(self, call_sid: str, status: str) -> None:
        if status in FINAL_CALL_STATUSES:
            self.writer.close_by_carrier_id(call_sid, EndReason.COMPLETED)

    async def shutdown_calls(self) -> None:
        """Cancel live calls: each closes its record with ``server_shutdown``."""
        for task in list(self.calls):
            task.cancel()
        if self.calls:
            await asyncio.wait(list(self.calls), timeout=5)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    catalog = load_catalog()
    engine = make_engine(settings.database_url)
    create_tables(engine)
    writer = CallWriter(engine, catalog=catalog)
    store = AgentStore(settings.agents_dir, catalog, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http:
            platform = Platform(settings, catalog, store, writer, http)
            app.state.platform = platform
            for problem_file, issues in store.problems.items():
                for issue in issues:
                    log.error("agent file not loaded: %s", issue)
            try:
                yield
            finally:
                await platform.shutdown_calls()
                writer.close_open_calls(EndReason.SERVER_SHUTDOWN)
                await writer.stop()
                engine.dispose()

    app = FastAPI(title="agentplatform", lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = METRICS

    from agentplatform.web.api import router as api_router
    from agentplatform.web.admin import router as admin_router

    def platform() -> Platform:
        return app.state.platform

    app.include_router(twilio_router(
        settings=settings,
        lookup_agent=lambda number: platform().lookup_agent(number),
        handle_call=lambda audio: platform().handle_call(audio),
        on_call_status=lambda sid, status: platform().on_call_status(sid, status),
    ))
    app.include_router(api_router)
    app.include_router(admin_router)
    return app
