"""The FastAPI application: one lifespan owns every shared client; routers do the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from agentplatform.agents.store import AgentStore
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.bridge.metrics import METRICS
from agentplatform.campaigns.service import CampaignQueue, start_campaign_queue
from agentplatform.carriers.base import CallAudio, CallInfo
from agentplatform.carriers.dialing import OutboundRequest
from agentplatform.carriers.plugin import Carrier
from agentplatform.carriers.registry import enabled_carriers
from agentplatform.catalog import Catalog, load_catalog
from agentplatform.config import Settings, get_settings
from agentplatform.cascade.capacity import CASCADE_CAPACITY
from agentplatform.limits.admission import Admission
from agentplatform.limits.drain import Drain
from agentplatform.limits.gate import CallGate, open_limit_store
from agentplatform.limits.headroom import Headroom, HeadroomCollector, Limits
from agentplatform.limits.worker_room import RoomBoard
from agentplatform.observability.logging import bind_call
from agentplatform.observability.startup import announce_agents
from agentplatform.observability.metrics import Gauges, PlatformMetrics
from agentplatform.outbound import Dialer
from agentplatform.records import EndReason
from agentplatform.single_use import SingleUseStore, single_use_store
from agentplatform.storage.database import make_engine
from agentplatform.storage.liveness import keep_closing_lost_calls
from agentplatform.storage.schema import upgrade_database
from agentplatform.recording.writer import RecordingWriter
from agentplatform.storage.writer import CallWriter

log = logging.getLogger(__name__)

MISSING_AGENT_MESSAGE = "Sorry, this number is not in service right now. Goodbye."


@dataclass
class Platform:
    """Everything the routes share; built once by the lifespan. To carriers it is
    ``PlatformServices`` (``carriers/plugin.py``), reached through their context."""

    settings: Settings
    catalog: Catalog
    store: AgentStore
    writer: CallWriter
    http: httpx.AsyncClient
    calls: set[asyncio.Task[object]] = field(default_factory=set)
    # The calls this process serves, by record id (for an admin's hang-up).
    live: dict[str, CallSession] = field(default_factory=dict)
    # Spend controls and the shutdown drain; Prometheus series.
    admission: Admission | None = None
    observer: PlatformMetrics | None = None
    # Spent token ids (stream tokens, browser call tokens, revoked sessions).
    single_use: SingleUseStore | None = None
    # Places outbound calls (API, CLI, campaigns); built by the lifespan.
    dialer: Dialer | None = None
    # Writes the recordings of agents that record their calls.
    recordings: RecordingWriter | None = None
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    async def admit_call(self, carrier: str, call_sid: str, agent: str, from_number: str,
                         to_number: str) -> str | None:
        """When a call arrives (webhook, INVITE): ``None`` to connect, else what the
        caller is told."""
        loaded = self.store.get(agent)
        if self.admission is None or loaded is None:
            return None
        with bind_call(carrier_call_id=call_sid, agent=agent):
            return await self.admission.at_arrival(carrier, call_sid, loaded.spec,
                                                   from_number, to_number)

    async def lookup_agent(self, number: str) -> str | None:
        # Picks up edited agent files per call: a stat in a thread, and any changed
        # file parsed in the agent-file worker process, never on the event loop.
        await self.store.refresh_async()
        agent = self.store.for_number(number)
        return agent.name if agent else None

    async def handle_call(self, audio: CallAudio) -> None:
        loaded = self.store.get(audio.info.agent)
        if loaded is None:
            log.warning("call %s: agent %r is gone", audio.info.call_id, audio.info.agent)
            await audio.hang_up(say=MISSING_AGENT_MESSAGE)
            return
        with bind_call(carrier_call_id=audio.info.call_id, agent=loaded.spec.name):
            if self.admission is not None and not await self.admission.at_stream(audio,
                                                                                 loaded.spec):
                return  # refused before any model session opened; recorded
            deps = CallDeps(settings=self.settings, catalog=self.catalog, recorder=self.writer,
                            http=self.http, observer=self.observer, recordings=self.recordings)
            # Its own task, so that ending it (drain timeout, shutdown) does not cancel
            # the route handler; cancelling the handler still cancels the call.
            session = CallSession(audio, loaded.spec, deps)
            task = asyncio.create_task(session.run())
            self.calls.add(task)
            self.live[session.call_id] = session
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            finally:
                self.calls.discard(task)
                self.live.pop(session.call_id, None)
                if self.admission is not None:
                    await self.admission.release(slot_holder(audio.info))
                self._count_malformed(audio)

    def hang_up(self, call_id: str, detail: str) -> bool:
        """Hang up the live call ``call_id`` if this process serves it."""
        session = self.live.get(call_id)
        if session is None:
            return False
        log.info("call %s: hung up by an admin (%s)", call_id, detail)
        session.end(EndReason.ADMIN_HUNG_UP, detail)
        return True

    def _count_malformed(self, audio: CallAudio) -> None:
        for kind, n in audio.malformed_counts.items():
            self.count_malformed(audio.info.carrier, str(kind), n)

    def count_malformed(self, carrier: str, kind: str, n: int) -> None:
        if self.observer is not None and n:
            self.observer.malformed_carrier_messages.labels(carrier, kind).inc(n)

    def dial_ended(self, request: OutboundRequest, reason: str, detail: str) -> None:
        """An outbound call nobody answered: close its queued record with ``reason``
        (``busy``, ``no_answer``, ``failed``, ``server_shutdown``) and free the slot it
        held."""
        try:
            end = EndReason(reason)
        except ValueError:
            log.warning("call %s: carrier gave unknown end reason %r", request.call_id, reason)
            end, detail = EndReason.FAILED, f"{reason}: {detail}"
        log.info("call %s to %s: %s %s", request.call_id, request.to_number, end, detail)
        self.writer.call_ended(request.call_id, end, detail)
        if self.observer is not None:
            self.observer.calls_ended.labels(str(end)).inc()
        if self.admission is not None:
            self._in_background(self._free_dialed_slot(request.call_id))

    async def _free_dialed_slot(self, holder: str) -> None:
        """The slot the dial service took for ``holder``: released here if this process
        holds it, else deleted from the shared store (the call was dialed, or talked,
        on another process, whose renewals then find nothing to renew)."""
        assert self.admission is not None
        await self.admission.release(holder)
        await self.admission.call_finished_at_carrier(holder)

    def dial_progress(self, request: OutboundRequest, status: str,
                      carrier_call_id: str) -> None:
        self.writer.call_status(request.call_id, status, carrier_call_id)

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def call_finished(self, call_sid: str) -> None:
        """The carrier says the call is over: close a record its stream left open,
        free a slot reserved for a stream that never started."""
        self.writer.close_by_carrier_id(call_sid, EndReason.COMPLETED)
        if self.admission is not None:
            task = asyncio.get_running_loop().create_task(
                self.admission.call_finished_at_carrier(call_sid))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def drain_then_exit(self) -> None:
        """SIGTERM: new calls are refused (see ``limits/drain.py``); live calls get
        until the drain timeout, then the rest are ended; records are flushed."""
        assert self.admission is not None
        left = await self.admission.drain.wait_for_calls(lambda: len(self.calls))
        if left:
            log.warning("drain timeout: ending %d live calls", left)
        await self.shutdown_calls()
        await self.writer.flush()

    async def shutdown_calls(self) -> None:
        """Cancel live calls: each closes its record with ``server_shutdown``."""
        for task in list(self.calls):
            task.cancel()
        if self.calls:
            await asyncio.wait(list(self.calls), timeout=5)


def slot_holder(info: CallInfo) -> str:
    """Whose concurrency slot a call holds: an outbound call keeps the one the dial
    service took under its platform id; an inbound one holds it under the carrier's."""
    return info.outbound.call_id if info.outbound is not None else info.call_id


def _warm_cascade(store: AgentStore, catalog: Catalog) -> asyncio.Task[None] | None:
    """Start loading the local speech engines the cascade agents need, if any."""
    from agentplatform.cascade.warmup import fixed_lines, local_engines_in_use, warm_local_engines

    agents = [a.spec for a in store.agents.values()]
    engines = local_engines_in_use(agents, catalog)
    lines = fixed_lines(agents, catalog)  # said word for word: rendered ahead
    return asyncio.create_task(warm_local_engines(engines, lines)) if engines else None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    catalog = load_catalog()
    engine = make_engine(settings.database_url)
    observer = PlatformMetrics()
    writer = CallWriter(engine, catalog=catalog, lease_seconds=settings.call_lease_seconds,
                        on_cost=lambda model, usd: observer.cost.labels(model).inc(usd))
    store = AgentStore(settings.agents_dir, catalog, settings)
    drain = Drain(settings.draining_message, settings.drain_timeout_seconds)
    single_use = single_use_store(settings, engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Migrations first, off the event loop; locked against other processes starting.
        await asyncio.to_thread(upgrade_database, engine)
        writer.start()
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http:
            limit_store = open_limit_store(settings, engine)
            gate = CallGate(limit_store, engine, settings)
            headroom = _headroom(settings, lambda: len(app.state.platform.calls))
            CASCADE_CAPACITY.max_calls = settings.cascade_max_calls  # the local engines' cap
            platform = Platform(settings, catalog, store, writer, http,
                                admission=Admission(gate, drain, writer, observer,
                                                    headroom=headroom,
                                                    busy_message=settings.busy_message),
                                observer=observer, single_use=single_use)
            platform.dialer = Dialer(store, carriers, writer, admission=platform.admission,
                                     observer=observer)
            platform.recordings = RecordingWriter(
                settings.recordings_dir, retention_days=settings.recording_retention_days)
            platform.recordings.start()
            app.state.platform = platform
            observer.watch(_live_gauges(platform, writer, drain))
            if headroom is not None:
                observer.registry.register(HeadroomCollector(headroom))
                headroom.start()
            keeper = asyncio.create_task(gate.keep_leases())
            # Calls left open by a server that died: closed at start-up, then as noticed.
            sweeper = asyncio.create_task(keep_closing_lost_calls(
                engine, catalog=catalog, interval=settings.call_lease_seconds / 4))
            drain.install(asyncio.get_running_loop(), platform.drain_then_exit)
            app.state.access.announce()
            announce_agents(store, catalog, settings)
            warming = _warm_cascade(store, catalog)
            for problem_file, issues in store.problems.items():
                for issue in issues:
                    log.error("agent file not loaded: %s", issue)
            started: list[Carrier] = []
            campaigns: CampaignQueue | None = None
            try:
                started = await _start_carriers(carriers)
                if headroom is not None:
                    _steer_streams(headroom, started)
                campaigns = await start_campaign_queue(platform, engine)
                yield
            finally:
                if campaigns is not None:
                    await campaigns.stop()  # no new dials; calls on the line go on
                if warming is not None:
                    warming.cancel()
                drain.hand_back()
                await platform.shutdown_calls()
                await _stop_carriers(started)  # after the calls: a hang-up can still go out
                await asyncio.to_thread(platform.recordings.close)  # files closed as heard
                if headroom is not None:
                    await headroom.stop()
                for task in (keeper, sweeper):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                limit_store.close()
                await single_use.close()
                writer.close_open_calls(EndReason.SERVER_SHUTDOWN)
                await writer.stop()
                engine.dispose()

    app = FastAPI(title="agentplatform", lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = METRICS
    app.state.observer = observer
    app.state.single_use = single_use  # also platform.single_use once the lifespan runs

    from agentplatform.web.api import router as api_router
    from agentplatform.web.dial_api import router as dial_router
    from agentplatform.web.admin import router as admin_router
    from agentplatform.web.campaigns_admin import router as campaigns_admin_router
    from agentplatform.web.campaigns_api import router as campaigns_api_router
    from agentplatform.web.setup import install_admin

    # Carriers are plug-ins (carriers/registry.py): their routes, their public paths,
    # their listeners; each reaches the platform through its CarrierContext.
    carriers = enabled_carriers(settings, single_use, lambda: app.state.platform)
    app.state.carriers = carriers
    for carrier in carriers:
        router = carrier.routes()
        if router is not None:
            app.include_router(router)
    app.include_router(dial_router)  # POST /api/calls, before GET /api/calls/{id}
    app.include_router(api_router)
    app.include_router(admin_router)
    app.include_router(campaigns_api_router)
    app.include_router(campaigns_admin_router)
    install_admin(app, settings,
                  public_paths=tuple(p for c in carriers for p in c.public_paths),
                  server_paths=tuple(p for c in carriers for p in c.server_paths))
    return app


async def _start_carriers(carriers: list[Carrier]) -> list[Carrier]:
    """Start every carrier's listeners; if one cannot start, stop those that did and
    fail the start-up (a server silently missing a carrier would lose its calls)."""
    started: list[Carrier] = []
    for carrier in carriers:
        try:
            await carrier.start()
        except BaseException:
            log.exception("carrier %s failed to start", carrier.name)
            await _stop_carriers(started)
            raise
        started.append(carrier)
    return started


async def _stop_carriers(carriers: list[Carrier]) -> None:
    for carrier in reversed(carriers):
        try:
            await carrier.stop()
        except Exception:
            log.exception("carrier %s failed to stop cleanly", carrier.name)



def _steer_streams(headroom: Headroom, carriers: list[Carrier]) -> None:
    """Let a full worker leave new streams to a sibling with room, through the carriers
    whose streams arrive on a socket every worker accepts on (Twilio's media listener)."""
    steering = [c for c in carriers if getattr(c, "steers_streams", False)]
    if not steering:
        return
    loop = asyncio.get_running_loop()
    switching: set[asyncio.Task[None]] = set()

    def on_change(accepting: bool) -> None:
        for carrier in steering:
            task = loop.create_task(carrier.accept_streams(accepting))  # type: ignore[attr-defined]
            switching.add(task)
            task.add_done_callback(switching.discard)

    headroom.steerable = True
    headroom.watch(on_change)


def _headroom(settings: Settings, live_calls: Callable[[], int]) -> Headroom | None:
    """This process's overload shedding, when on (``limits/headroom.py``)."""
    if not settings.overload_shedding:
        return None
    from agentplatform.serving import WORKER_ENV

    return Headroom(Limits(max_lag_ms=settings.overload_max_loop_lag_ms,
                           max_cpu=settings.overload_max_cpu,
                           max_calls=settings.max_calls_per_process), live_calls,
                    board=RoomBoard.from_environment(os.environ),  # under serve --workers
                    index=int(os.environ.get(WORKER_ENV, "0") or 0))


def _live_gauges(platform: Platform, writer: CallWriter, drain: Drain) -> Gauges:
    """What ``/metrics`` reads at scrape time."""

    def writer_figures() -> tuple[int, int, int, int]:
        stats = writer.stats()
        return stats.queued, stats.retries, stats.dropped, stats.failed

    return Gauges(active_calls=lambda: len(platform.calls),
                  draining=lambda: float(drain.draining), writer=writer_figures)
