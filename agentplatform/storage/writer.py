"""The call-record writer: a ``CallRecorder`` that never makes its caller wait.

The bridge reports a call from the audio path, where a slow disk or a busy
database must cost nothing. So every recording method only stamps the time,
wraps its arguments in a small command and puts it on a queue, and returns. One
background thread takes commands in order and applies whatever has piled up in a
single short transaction: one commit for a burst of transcript turns instead of
one each.

Faults stay inside the writer. If a batch fails while the database is down (a
restart, a killed connection, a failover), the batch is kept and retried with
backoff until the database answers again; meanwhile the queue keeps taking
commands, so the audio path never waits. If it fails while the database is up,
the command is at fault: the batch is rolled back and replayed one command per
transaction, so one bad command (a dropped table, a duplicate id) loses only
itself. Nothing raises back into the bridge.

The queue is bounded where it can be: past ``max_queue`` commands waiting, call
events are shed (and counted); past twice that, transcript turns and tool calls
too. What a bill or a call's ending depends on (start, usage, model, end) is
never shed — a few commands per call, so memory stays bounded by calls, not time.

The writer also keeps this process's open calls alive in the database: every
third of ``lease_seconds`` it pushes their ``lease_expires_at`` out (one UPDATE,
off the audio path). A process that dies stops doing so, and any other process
then closes its calls as ``server_lost`` (``storage/liveness.py``).

Only the writer thread touches the database session and the per-call bookkeeping
(next transcript seq, calls this process opened), so none of it needs a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, func, insert, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from agentplatform.catalog import Catalog
from agentplatform.errors import CatalogError
from agentplatform.realtime.base import Usage
from agentplatform.records import CallStart, EndReason
from agentplatform.storage.closing import CLOSE_COLUMNS, close_call, lease_ran_out, lost_at
from agentplatform.storage.liveness import renew_leases
from agentplatform.storage.models import (
    Call, CallEvent, CallStatus, ToolInvocation, Turn, utcnow,
)
from agentplatform.storage.pricing import cost_usd

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 500
DEFAULT_MAX_QUEUE = 50_000
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
DEFAULT_LEASE_SECONDS = 30.0  # the CALL_LEASE_SECONDS default
LINGER_SECONDS = 0.05  # a batch gathers this long after its first command
_ID_CHUNK = 500  # ids per IN (...) clause when closing many calls at once
# The bridge's event for the caller talking over the agent; counted on the call row.
INTERRUPTION_EVENT = "barge_in"
LOST_BY_CARRIER_STATUS = "closed by carrier status; its server stopped renewing the lease"


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class _CallStarted:
    start: CallStart
    at: datetime


@dataclass(frozen=True, slots=True)
class _CallQueued:
    start: CallStart
    machine_detection: str
    at: datetime


@dataclass(frozen=True, slots=True)
class _StatusChanged:
    call_id: str
    status: str
    carrier_call_id: str


@dataclass(frozen=True, slots=True)
class _TurnAdded:
    call_id: str
    role: str
    text: str
    interrupted: bool
    latency_ms: float | None
    model_ms: float | None
    tool_ms: float | None
    at: datetime
    parts: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class _ToolInvoked:
    call_id: str
    name: str
    arguments: str
    result: str
    ok: bool
    duration_ms: float
    at: datetime


@dataclass(frozen=True, slots=True)
class _EventAdded:
    call_id: str
    kind: str
    detail: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class _UsageAdded:
    call_id: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class _ModelServed:
    call_id: str
    model: str
    at: datetime


@dataclass(frozen=True, slots=True)
class _CallEnded:
    call_id: str
    reason: EndReason
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class _ClosedByCarrier:
    carrier_call_id: str
    reason: EndReason
    at: datetime


@dataclass(frozen=True, slots=True)
class _CloseOpenCalls:
    reason: EndReason
    at: datetime


@dataclass(frozen=True, slots=True)
class _Barrier:
    """Not a write: ``release`` runs once everything queued before it is committed."""

    release: Callable[[], None]


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_Write = (
    _CallStarted | _CallQueued | _StatusChanged | _TurnAdded | _ToolInvoked | _EventAdded | _UsageAdded | _ModelServed
    | _CallEnded | _ClosedByCarrier | _CloseOpenCalls
)
_Command = _Write | _Barrier | _Stop
# Append-only tables, written through Core (no ORM object per row).
_TURNS: Table = Turn.__table__  # type: ignore[attr-defined]
_TOOLS: Table = ToolInvocation.__table__  # type: ignore[attr-defined]
_EVENTS: Table = CallEvent.__table__  # type: ignore[attr-defined]
_CALLS: Table = Call.__table__  # type: ignore[attr-defined]
# Shed first when the queue is over its bound, then the second tier at twice the bound.
_SHED_FIRST: tuple[type, ...] = (_EventAdded,)
_SHED_SECOND: tuple[type, ...] = (_TurnAdded, _ToolInvoked)


@dataclass(slots=True)
class WriterStats:
    """Counters for a status page: commands waiting, written, lost to errors, shed
    by the queue bound, and write attempts retried while the database was down."""

    queued: int = 0
    applied: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    database_down: bool = False


# ---------------------------------------------------------------- the writer


class CallWriter:
    """Queue-backed ``CallRecorder`` over a SQLAlchemy engine.

    ``start()`` the thread, record freely, then ``await stop()`` (or ``close()``
    from sync code) to write what is queued. The thread is a daemon so a process
    that exits without closing does not hang; what was still queued is lost then.
    """

    def __init__(
        self, engine: Engine, *, catalog: Catalog | None = None,
        max_batch: int = DEFAULT_MAX_BATCH, max_queue: int = DEFAULT_MAX_QUEUE,
        retry_first: float = RETRY_FIRST_SECONDS, retry_max: float = RETRY_MAX_SECONDS,
        on_cost: Callable[[str, float], None] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS, linger: float = LINGER_SECONDS,
    ) -> None:
        self._engine = engine
        self._linger = linger
        self._catalog = catalog
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._retry_first, self._retry_max = retry_first, retry_max
        # Told (model, usd) for every priced amount, from the writer thread.
        self._on_cost = on_cost
        self._lease = timedelta(seconds=lease_seconds)
        self._renew_every = max(lease_seconds / 3.0, 0.05)
        self._next_renewal = time.monotonic() + self._renew_every
        self._queue: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._applied = 0
        self._failed = 0
        self._dropped = 0
        self._retries = 0
        self._database_down = False
        # Writer-thread state.
        self._next_seq: dict[str, int] = {}
        self._open: set[str] = set()  # calls this process started and has not seen closed
        self._closed_in_tx: list[str] = []  # forgotten only once their close commits
        self._unpriced: set[str] = set()
        self._costs_in_tx: list[tuple[str, float]] = []
        # Rows only ever appended (turns, tools, events) and the interruption counts
        # they imply, gathered per transaction and written as one multi-row INSERT per
        # table and one UPDATE per call: an ORM object and an UPDATE for every barge-in
        # cost ~0.25 ms of Python each, on the same core (and GIL) as the calls' audio.
        self._rows_in_tx: dict[Table, list[dict[str, Any]]] = {}
        self._interruptions_in_tx: Counter[str] = Counter()
        self._appends: frozenset[type] = frozenset({_TurnAdded, _ToolInvoked, _EventAdded})
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            _CallStarted: self._on_call_started,
            _CallQueued: self._on_call_queued,
            _StatusChanged: self._on_status_changed,
            _TurnAdded: self._on_turn,
            _ToolInvoked: self._on_tool,
            _EventAdded: self._on_event,
            _UsageAdded: self._on_usage,
            _ModelServed: self._on_model_served,
            _CallEnded: self._on_call_ended,
            _ClosedByCarrier: self._on_closed_by_carrier,
            _CloseOpenCalls: self._on_close_open_calls,
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("CallWriter already started")
        self._thread = threading.Thread(target=self._run, name="call-writer", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def close(self, timeout: float | None = 10.0) -> bool:
        """Stop taking commands, write everything queued, end the thread.

        Returns False if the queue was not drained within ``timeout`` seconds.
        """
        if not self._closed:
            self._closed = True
            if self._thread is None:
                self.start()  # never started: still write what was queued
            self._queue.put(_Stop())
        assert self._thread is not None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def stop(self, timeout: float | None = 10.0) -> bool:
        """``close`` without blocking the event loop."""
        return await asyncio.to_thread(self.close, timeout)

    async def flush(self) -> None:
        """Wait until everything queued before this call is committed (or failed)."""
        if not self.running:
            raise RuntimeError("CallWriter is not running; call start() first")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def release() -> None:
            loop.call_soon_threadsafe(_resolve, done)

        self._queue.put(_Barrier(release))
        await done

    def stats(self) -> WriterStats:
        return WriterStats(queued=self._queue.qsize(), applied=self._applied, failed=self._failed,
                           dropped=self._dropped, retries=self._retries,
                           database_down=self._database_down)

    # ------------------------------------------------------------ CallRecorder

    def call_started(self, start: CallStart) -> None:
        self._put(_CallStarted(replace(start, parameters=dict(start.parameters)), utcnow()))

    def call_queued(self, start: CallStart, machine_detection: str) -> None:
        """An outbound call, recorded before its carrier dials (``outbound/``)."""
        self._put(_CallQueued(replace(start, parameters=dict(start.parameters)),
                              machine_detection, utcnow()))

    def call_status(self, call_id: str, status: str, carrier_call_id: str = "") -> None:
        """An open outbound call moved on (``ringing``), with the carrier's id once
        known; a closed call keeps its ``ended``."""
        self._put(_StatusChanged(call_id, status, carrier_call_id))

    def turn(
        self, call_id: str, role: str, text: str, *, interrupted: bool = False,
        latency_ms: float | None = None, model_ms: float | None = None,
        tool_ms: float | None = None, parts: dict[str, float] | None = None,
    ) -> None:
        self._put(_TurnAdded(call_id, role, text, interrupted, latency_ms, model_ms, tool_ms,
                             utcnow(), parts))

    def tool_invocation(
        self, call_id: str, name: str, arguments: str, result: str, *, ok: bool,
        duration_ms: float,
    ) -> None:
        self._put(_ToolInvoked(call_id, name, arguments, result, ok, duration_ms, utcnow()))

    def event(self, call_id: str, kind: str, detail: dict[str, Any] | None = None) -> None:
        self._put(_EventAdded(call_id, kind, dict(detail or {}), utcnow()))

    def usage(self, call_id: str, model: str, usage: Usage) -> None:
        # Copy: the caller may keep accumulating into the same Usage object.
        self._put(_UsageAdded(call_id, model, replace(usage)))

    def model_served(self, call_id: str, model: str) -> None:
        self._put(_ModelServed(call_id, model, utcnow()))

    def call_ended(self, call_id: str, reason: EndReason, detail: str = "") -> None:
        self._put(_CallEnded(call_id, reason, detail, utcnow()))

    def close_by_carrier_id(self, carrier_call_id: str, reason: EndReason) -> None:
        self._put(_ClosedByCarrier(carrier_call_id, reason, utcnow()))

    def close_open_calls(self, reason: EndReason = EndReason.SERVER_SHUTDOWN) -> None:
        """Close every call this process started that is still open (server shutdown)."""
        self._put(_CloseOpenCalls(reason, utcnow()))

    def _put(self, command: _Command) -> None:
        if self._closed:
            log.warning("call writer is closed; dropped %s", type(command).__name__)
            return
        if self._over_bound(command):
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error("call writer queue over its bound (%d waiting); %d records shed so far",
                          self._queue.qsize(), self._dropped)
            return
        self._queue.put(command)

    def _over_bound(self, command: _Command) -> bool:
        if not isinstance(command, _SHED_FIRST + _SHED_SECOND):
            return False
        waiting = self._queue.qsize()
        if isinstance(command, _SHED_FIRST):
            return waiting >= self._max_queue
        return waiting >= 2 * self._max_queue

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            pending: list[_Write] = []
            for command in self._take_batch():
                if isinstance(command, _Barrier | _Stop):
                    self._apply(pending)
                    pending = []
                    if isinstance(command, _Stop):
                        return
                    _call_quietly(command.release)
                else:
                    pending.append(command)
            self._apply(pending)
            if time.monotonic() >= self._next_renewal:
                self._renew_leases()

    def _take_batch(self) -> Iterator[_Command]:
        try:
            yield self._queue.get(timeout=max(self._next_renewal - time.monotonic(), 0.0))
        except queue.Empty:
            return  # time to renew the leases
        # Let a burst gather (the GIL is free while we sleep): one transaction for what
        # came in the next LINGER_SECONDS, not one per command. Each transaction is ms
        # of Python holding the GIL, and the event loop carrying the calls' audio waits
        # for every one of them (longer still when the OS preempts this thread meanwhile).
        time.sleep(self._linger)
        for _ in range(self._max_batch - 1):
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    def _apply(self, batch: list[_Write]) -> None:
        if not batch:
            return
        attempt = 0
        while True:
            self._closed_in_tx = []
            self._costs_in_tx = []
            self._rows_in_tx = {}
            self._interruptions_in_tx = Counter()
            try:
                with Session(self._engine) as session:
                    for command in batch:
                        kind = type(command)
                        if kind not in self._appends:
                            # Anything that reads or updates sees the rows before it.
                            self._write_appended(session)
                        self._handlers[kind](session, command)
                    self._write_appended(session)
                    session.commit()
                break
            except Exception as exc:
                # Per-call counters may have advanced for writes that were rolled back.
                self._next_seq.clear()
                if not self._database_unreachable(exc):
                    self._database_down = False
                    self._isolate(batch, exc)
                    return
                attempt += 1
                self._retries += 1
                self._database_down = True
                delay = min(self._retry_max, self._retry_first * 2 ** min(attempt - 1, 16))
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("database unreachable (%s); keeping %d records, retry %d in %.1f s",
                                _first_line(exc), len(batch), attempt, delay)
                time.sleep(delay)
        if self._database_down:
            log.warning("database reachable again; wrote %d held records", len(batch))
            self._database_down = False
        self._applied += len(batch)
        for call_id in self._closed_in_tx:
            self._open.discard(call_id)
            self._next_seq.pop(call_id, None)
        if self._on_cost is not None:
            for model, usd in self._costs_in_tx:
                with _suppress_all("cost callback"):
                    self._on_cost(model, usd)

    def _renew_leases(self) -> None:
        """Keep this process's open calls from being taken for lost (retried next time)."""
        self._next_renewal = time.monotonic() + self._renew_every
        if not self._open:
            return
        try:
            with Session(self._engine) as session:
                renew_leases(session, self._open, utcnow(), self._lease)
                session.commit()
        except Exception as exc:
            log.warning("could not renew the leases of %d open calls: %s", len(self._open),
                        _first_line(exc))

    def _database_unreachable(self, exc: Exception) -> bool:
        """Whether ``exc`` came from the database being away rather than the command:
        only connection-level errors qualify, and only if a trivial query fails too."""
        if not isinstance(exc, DBAPIError):
            return False
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return True
        return False

    def _isolate(self, batch: list[_Write], exc: Exception) -> None:
        """The database is up, so a command is at fault: replay one per transaction."""
        if len(batch) > 1:
            log.warning("call-record batch of %d failed (%s); retrying one by one",
                        len(batch), _first_line(exc))
            for command in batch:
                self._apply([command])
            return
        self._failed += 1
        log.error("call-record write %s failed: %s", _describe(batch[0]), _first_line(exc),
                  exc_info=log.isEnabledFor(logging.DEBUG))

    # ------------------------------------------------------------ handlers

    def _on_call_started(self, session: Session, cmd: _CallStarted) -> None:
        s = cmd.start
        if s.outbound:  # answered: the queued row becomes the conversation's record
            session.exec(update(Call).where(Call.id == s.call_id, Call.ended_at.is_(None))
                         .values(carrier_call_id=s.carrier_call_id, model=s.model,
                                 status=CallStatus.IN_PROGRESS.value))
            return
        session.add(Call(
            id=s.call_id, carrier_call_id=s.carrier_call_id, carrier=s.carrier, agent=s.agent,
            model=s.model, requested_model=s.model, from_number=s.from_number,
            to_number=s.to_number, parameters=s.parameters, started_at=cmd.at,
            lease_expires_at=cmd.at + self._lease, last_seen_at=cmd.at,
        ))
        self._open.add(s.call_id)
        self._next_seq[s.call_id] = 1

    def _on_call_queued(self, session: Session, cmd: _CallQueued) -> None:
        s = cmd.start
        session.add(Call(
            id=s.call_id, carrier_call_id=s.carrier_call_id, carrier=s.carrier, agent=s.agent,
            model=s.model, requested_model=s.model, from_number=s.from_number,
            to_number=s.to_number, parameters=s.parameters, started_at=cmd.at,
            direction="outbound", status=CallStatus.QUEUED.value,
            machine_detection=cmd.machine_detection,
            lease_expires_at=cmd.at + self._lease, last_seen_at=cmd.at,
        ))
        self._open.add(s.call_id)
        self._next_seq[s.call_id] = 1

    def _on_status_changed(self, session: Session, cmd: _StatusChanged) -> None:
        values: dict[str, Any] = {"status": cmd.status}
        if cmd.carrier_call_id:
            values["carrier_call_id"] = cmd.carrier_call_id
        session.exec(update(Call).where(Call.id == cmd.call_id, Call.ended_at.is_(None),
                                        Call.status != CallStatus.IN_PROGRESS.value)
                     .values(**values))

    def _on_turn(self, session: Session, cmd: _TurnAdded) -> None:
        self._append(_TURNS, {
            "call_id": cmd.call_id, "seq": self._take_seq(session, cmd.call_id),
            "role": cmd.role, "text": cmd.text, "interrupted": cmd.interrupted,
            "latency_ms": cmd.latency_ms, "model_ms": cmd.model_ms, "tool_ms": cmd.tool_ms,
            "latency_parts": cmd.parts, "created_at": cmd.at,
        })

    def _on_tool(self, session: Session, cmd: _ToolInvoked) -> None:
        self._append(_TOOLS, {
            "call_id": cmd.call_id, "name": cmd.name, "arguments": cmd.arguments,
            "result": cmd.result, "ok": cmd.ok, "duration_ms": cmd.duration_ms,
            "created_at": cmd.at,
        })

    def _on_event(self, session: Session, cmd: _EventAdded) -> None:
        self._append(_EVENTS, {"call_id": cmd.call_id, "kind": cmd.kind, "detail": cmd.detail,
                               "created_at": cmd.at})
        if cmd.kind == INTERRUPTION_EVENT:
            self._interruptions_in_tx[cmd.call_id] += 1

    def _append(self, table: Table, row: dict[str, Any]) -> None:
        self._rows_in_tx.setdefault(table, []).append(row)

    def _write_appended(self, session: Session) -> None:
        """Write the gathered rows, in the order their tables were first touched, and
        the interruption counts; the calls they belong to were flushed first."""
        if not self._rows_in_tx and not self._interruptions_in_tx:
            return
        session.flush()  # calls added in this transaction, before rows that refer to them
        for table, rows in self._rows_in_tx.items():
            session.execute(insert(table), rows)
        for call_id, count in self._interruptions_in_tx.items():
            session.execute(update(_CALLS).where(_CALLS.c.id == call_id)
                            .values(interruptions=_CALLS.c.interruptions + count))
        self._rows_in_tx = {}
        self._interruptions_in_tx = Counter()

    def _on_usage(self, session: Session, cmd: _UsageAdded) -> None:
        u = cmd.usage
        # Priced per report with the model that produced it, so a mid-call fallback
        # to a model with other prices is billed right for each part.
        result = session.exec(update(Call).where(Call.id == cmd.call_id).values(
            input_text_tokens=Call.input_text_tokens + u.input_text,
            input_audio_tokens=Call.input_audio_tokens + u.input_audio,
            input_cached_tokens=Call.input_cached_tokens + u.input_cached,
            output_text_tokens=Call.output_text_tokens + u.output_text,
            output_audio_tokens=Call.output_audio_tokens + u.output_audio,
            cost_usd=Call.cost_usd + self._price(cmd.model, u),
        ))
        if result.rowcount == 0:
            log.warning("usage for unknown call %s dropped", cmd.call_id)

    def _on_model_served(self, session: Session, cmd: _ModelServed) -> None:
        session.exec(update(Call).where(Call.id == cmd.call_id).values(model=cmd.model))
        # The first model to answer starts the per-time billing clock.
        session.exec(update(Call).where(Call.id == cmd.call_id,
                                        Call.model_connected_at.is_(None))
                     .values(model_connected_at=cmd.at))

    def _on_call_ended(self, session: Session, cmd: _CallEnded) -> None:
        row = session.exec(
            select(*CLOSE_COLUMNS)
            .where(Call.id == cmd.call_id)
        ).first()
        if row is None:
            log.warning("call_ended for unknown call %s", cmd.call_id)
            self._closed_in_tx.append(cmd.call_id)
        elif row.ended_at is not None:
            log.debug("call %s already closed; keeping its first end reason", cmd.call_id)
            self._closed_in_tx.append(cmd.call_id)
        else:
            self._close(session, row, cmd.reason, cmd.detail, cmd.at)

    def _on_closed_by_carrier(self, session: Session, cmd: _ClosedByCarrier) -> None:
        rows = session.exec(
            select(*CLOSE_COLUMNS)
            .where(Call.carrier_call_id == cmd.carrier_call_id, Call.ended_at.is_(None))
        ).all()
        for row in rows:
            if row.id not in self._open and lease_ran_out(row, cmd.at):
                # Nobody holds the call: its server died before it could close it.
                log.warning("call %s: carrier status for a call its server lost", row.id)
                self._close(session, row, EndReason.SERVER_LOST, LOST_BY_CARRIER_STATUS,
                            lost_at(session, row), lease_ran_out_before=cmd.at)
            else:
                log.info("closing call %s from the carrier's status (%s)", row.id, cmd.reason)
                self._close(session, row, cmd.reason, "closed by carrier status", cmd.at)

    def _on_close_open_calls(self, session: Session, cmd: _CloseOpenCalls) -> None:
        ids = sorted(self._open)
        for i in range(0, len(ids), _ID_CHUNK):
            rows = session.exec(
                select(*CLOSE_COLUMNS)
                .where(Call.id.in_(ids[i:i + _ID_CHUNK]), Call.ended_at.is_(None))
            ).all()
            for row in rows:
                self._close(session, row, cmd.reason, "", cmd.at)
        # Calls already closed elsewhere need no row change, only forgetting.
        self._closed_in_tx.extend(ids)

    # ------------------------------------------------------------ helpers

    def _close(
        self, session: Session, row: Any, reason: EndReason, detail: str, at: datetime,
        *, lease_ran_out_before: datetime | None = None,
    ) -> None:
        close_call(session, row, reason, detail, at, lease_ran_out_before=lease_ran_out_before,
                   price=lambda model, seconds: self._price(model, Usage(),
                                                            audio_seconds=seconds))
        self._closed_in_tx.append(row.id)

    def _take_seq(self, session: Session, call_id: str) -> int:
        seq = self._next_seq.get(call_id)
        if seq is None:  # not started here, or forgotten after a failed batch
            last = session.exec(select(func.max(Turn.seq)).where(Turn.call_id == call_id)).one()
            seq = (last or 0) + 1
        self._next_seq[call_id] = seq + 1
        return seq

    def _price(self, model: str, usage: Usage, *, audio_seconds: float = 0.0) -> float:
        try:
            usd = cost_usd(model, usage, audio_seconds=audio_seconds, catalog=self._catalog)
            if usd:
                self._costs_in_tx.append((model, usd))
            return usd
        except CatalogError:
            if model not in self._unpriced:
                self._unpriced.add(model)
                log.warning("no prices for model %r; its cost is recorded as 0", model)
            return 0.0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _suppress_all(contextlib.AbstractContextManager[None]):
    """Log and swallow any error: a metrics callback must never break a write."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is not None:
            log.debug("%s failed: %r", self._what, exc)
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _call_quietly(release: Callable[[], None]) -> None:
    try:
        release()
    except RuntimeError:  # the waiting loop has closed; nobody is waiting any more
        log.debug("flush waiter gone")


def _describe(command: _Write) -> str:
    call = getattr(command, "call_id", None) or getattr(command, "carrier_call_id", None)
    if isinstance(command, _CallStarted | _CallQueued):
        call = command.start.call_id
    return f"{type(command).__name__}({call or ''})"
