"""One phone call joined to one model session.

The whole call path, readable in one sitting:

    carrier frame (μ-law 8 kHz) ─ decode ─ resample ─▶ model.send_audio
    model AudioDelta ─ resample ─ encode ─▶ carrier media + mark
    model SpeechStarted ─▶ carrier clear, model truncate (what was heard)
    model ToolCall ─▶ tool task ─▶ model.send_tool_result (audio keeps flowing)

The bridge knows no provider and no carrier: it speaks ``ModelSession`` and
``CallAudio`` only. It never waits on disk, the database or a tool: records go
through the non-blocking ``CallRecorder``, tools run as their own tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import httpx

from agentplatform import models
from agentplatform.agents import envpolicy
from agentplatform.agents.placeholders import CallContext, render
from agentplatform.agents.spec import AgentSpec
from agentplatform.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from agentplatform.audio.resample import make_resampler
from agentplatform.bridge.idle import IdleWatch
from agentplatform.bridge.metrics import METRICS, BridgeMetrics
from agentplatform.bridge.playback import PlaybackTracker
from agentplatform.bridge.answering import (
    GREETING_END_SECONDS, HOLD_SECONDS, AnsweringGate, Decision, Step,
)
from agentplatform.carriers.base import CallAudio, Dtmf, InboundAudio, MarkPlayed, StreamStopped
from agentplatform.carriers.dialing import AnsweringMachine
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.errors import CarrierError, PlatformError
from agentplatform.observability import turn_latency
from agentplatform.observability.logging import set_call_id
from agentplatform.observability.metrics import PlatformMetrics
from agentplatform.realtime.base import (
    AudioDelta,
    AudioDone,
    ModelEvent,
    ModelSession,
    ResponseDone,
    SessionError,
    SessionNotice,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    Transcript,
)
from agentplatform.recording import announce
from agentplatform.recording.call import CallRecording
from agentplatform.recording.writer import RecordingWriter
from agentplatform.records import CallRecorder, CallStart, EndReason
from agentplatform.tools import EndCall, SendDtmf, ToolOutcome, ToolRunner, Transfer, tool_specs

log = logging.getLogger(__name__)

# End reasons a carrier may give when it ends the line itself (``StreamStopped.reason``).
_CARRIER_END_REASONS = frozenset({EndReason.MEDIA_TIMEOUT.value, EndReason.CARRIER_ERROR.value})

APOLOGY = "Sorry, our assistant is not available right now. Please call again later."
SHUTDOWN_APOLOGY = "Sorry, we have to end this call now. Please call again."
GOODBYE_GRACE_SECONDS = 20.0
# A backstop for a carrier whose transfer never returns. A transfer may take as long
# as the target rings (a SIP carrier waits up to 60 s for the NOTIFY that says the
# target answered), so the bound sits above that: a shorter one would call a transfer
# failed, and talk on with the caller, while the target is still ringing.
TRANSFER_TIMEOUT_SECONDS = 90.0
# What the model is told when a transfer did not go through (never the number).
# Each platform note ends with a line to say (``Say something like: "…"``): a language
# model words it its own way; the offline rules responder, which cannot follow an
# instruction, says that line (``text/rules.py``).
TRANSFER_FAILED_NOTE = (
    "(The transfer to {destination} did not go through: the caller is still on the line "
    "with you. Tell them the transfer failed, and keep helping them. Say something like: "
    "\"I'm sorry, I couldn't put you through just now. How else can I help?\")"
)
# No input (``limits.idle_prompt_seconds``): what the model is asked to say.
IDLE_PROMPT = ("The caller has said nothing for a while. Briefly ask whether they are "
               "still there. Say something like: \"Are you still there?\"")
IDLE_GOODBYE = ("The caller is still silent. Say a short, polite goodbye now: you are "
                "ending the call. Say something like: \"I can't hear anyone, so I'll "
                "hang up now. Goodbye.\"")
# Carrier events queued behind a handler that waits: past this many the carrier holds
# its frames (``CallAudio.hold_delivery``), at this few it sends them again.
CARRIER_BACKLOG_HOLD = 64
CARRIER_BACKLOG_RELEASE = 16
# Session notices that mean the provider connection was replaced mid-call.
RECONNECT_NOTICES = frozenset({"reconnected", "resumed", "recycled"})


class CallState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    ENDING = "ending"  # a goodbye is playing; the call ends when it has been heard
    ENDED = "ended"


@dataclass(slots=True)
class CallDeps:
    """What every call shares with the server."""

    settings: Settings
    catalog: Catalog
    recorder: CallRecorder
    http: httpx.AsyncClient
    metrics: BridgeMetrics = field(default_factory=lambda: METRICS)
    # (agent, model, deps, *, instructions, tools) -> OpenedModel: realtime, passthrough
    # or cascade is decided there (``models.py``), never here.
    open_model: models.ModelOpener = models.open_model
    connect_timeout: float = 10.0
    transfer_timeout: float = TRANSFER_TIMEOUT_SECONDS
    # Prometheus series (``/metrics``); None in tests and tools that do not export.
    observer: PlatformMetrics | None = None
    # Writes call recordings (agents with ``recording.enabled``); None records none.
    recordings: RecordingWriter | None = None


@dataclass(slots=True)
class _TurnTiming:
    latency_ms: float  # caller stopped speaking → first answer audio sent to the carrier
    model_ms: float  # end of turn → first answer audio received from the model
    tool_ms: float  # tool time inside that wait
    parts: dict[str, float] = field(default_factory=dict)  # latency_ms by where it went


@dataclass(slots=True)
class _PendingTurn:
    text: str
    timing: _TurnTiming | None = None


@dataclass(slots=True)
class _Ending:
    reason: EndReason
    transfer: Transfer | None = None
    response_done: asyncio.Event = field(default_factory=asyncio.Event)
    # The carrier has been asked to transfer: from then on the line ending is the
    # transfer's doing (Twilio stops the stream, a SIP caller may BYE our leg).
    transferring: bool = False


class CallSession:
    def __init__(self, audio: CallAudio, agent: AgentSpec, deps: CallDeps) -> None:
        self.audio = audio
        self.agent = agent
        self.deps = deps
        # A call the platform placed keeps the id its record was queued under.
        outbound = audio.info.outbound
        self.call_id = outbound.call_id if outbound is not None else uuid.uuid4().hex
        self.answering = AnsweringGate(outbound)
        self.state = CallState.CONNECTING
        self.model: ModelSession | None = None
        self.model_id = agent.model
        self.playback = PlaybackTracker()
        self.tools = ToolRunner(agent, http_client=deps.http,
                                allowed_env=envpolicy.allowlist(deps.settings))
        self.end_reason: EndReason | None = None
        self.end_detail = ""
        self._ended = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ending: _Ending | None = None
        self._limit_passed = False  # the call's time is up (acted on once no ending is under way)
        self._passthrough = False
        self._to_model = None
        self._to_carrier = None
        self._out_bytes_per_ms = 48.0
        self._speech_stopped_at: float | None = None
        self._started_at = time.monotonic()
        self._tool_ms_in_turn = 0.0
        self._turn_waited_ms = 0.0  # end-of-turn wait the model spent before saying so
        self._turn_notice: SessionNotice | None = None  # a cascade's own split of the turn
        self._turn_timing: dict[str, _TurnTiming] = {}
        self._provider = ""
        obs = deps.observer
        # Bound once: the per-frame cost is one call, no lookups.
        self._observe_in = obs.frame_inbound.observe if obs else None
        self._observe_out = obs.frame_outbound.observe if obs else None
        self._inbound_ms = deps.metrics.inbound_ms.add
        self._outbound_ms = deps.metrics.outbound_ms.add
        # Model events handled as they arrive (``_on_model_event``): while one handler
        # waits (a slow carrier socket), later events queue behind it, in order.
        self._model_handlers: dict[type, Callable[[Any], Awaitable[None]]] = {}
        self._model_busy = False
        self._model_backlog: deque[ModelEvent] = deque()
        self._model_context: contextvars.Context | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Carrier events handled as they arrive (``_on_carrier_event``), the same way.
        self._carrier_handlers: dict[type, Callable[[Any], Awaitable[None]]] = {}
        self._carrier_busy = False
        self._carrier_backlog: deque[Any] = deque()
        self._carrier_held = False  # the carrier was asked to hold its frames
        self._carrier_context: contextvars.Context | None = None
        self._pending_assistant: dict[str, _PendingTurn] = {}
        self._heard_fraction: dict[str, float] = {}
        self._recording: CallRecording | None = None
        self._announcing: asyncio.Task[None] | None = None
        limits = agent.limits
        self.idle = IdleWatch(limits.idle_prompt_seconds, limits.idle_prompts_max,
                              prompt=self._on_idle_prompt, give_up=self._on_idle_give_up)

    # ------------------------------------------------------------------ lifecycle

    def _transition(self, expected: tuple[CallState, ...], new: CallState) -> None:
        if self.state not in expected:
            raise RuntimeError(f"call {self.call_id}: expected {expected}, got {self.state}")
        self.state = new

    async def run(self) -> EndReason:
        info = self.audio.info
        metrics = self.deps.metrics
        metrics.active_calls += 1
        metrics.calls_total += 1
        set_call_id(self.call_id)  # every log line of this call (and its tasks) names it
        self._started_at = time.monotonic()
        log.info("call started: %s %s → %s, agent %s, model %s%s", info.carrier,
                 info.from_number or "?", info.to_number or "?", self.agent.name,
                 self.agent.model, " (outbound)" if info.outbound is not None else "")
        if self.deps.observer is not None:
            self.deps.observer.calls_started.inc()
        self.deps.recorder.call_started(CallStart(
            call_id=self.call_id, carrier_call_id=info.call_id, agent=self.agent.name,
            model=self.agent.model, carrier=info.carrier, from_number=info.from_number,
            to_number=info.to_number, parameters=dict(self._context().params),
            outbound=info.outbound is not None,
        ))
        try:
            if self.deps.recordings is not None and self.agent.recording.enabled:
                self._recording = self.deps.recordings.open(
                    self.call_id, self.deps.recorder, mark_lead_ms=self.audio.mark_lead_ms)
                if self._recording is not None and self.agent.recording.announce:
                    self._announcing = self._spawn(self._announce())  # while the model opens
            self.model = await self._open_model()
            if self.model is None:
                await self._finish(EndReason.PROVIDER_ERROR, "no model could be reached")
                return EndReason.PROVIDER_ERROR
            self._transition((CallState.CONNECTING,), CallState.LIVE)
            if self.answering.holds:  # outbound: not a word before the verdict
                self._spawn(self._hold_for_verdict())
            elif self._announcing is not None:  # the greeting waits for it: loops must run
                self._spawn(self._greet())
            else:
                await self._greet()
            self._spawn(self._carrier_loop())
            self._spawn(self._model_loop())
            self._spawn(self._limit_timer())
            await self._ended.wait()
        except asyncio.CancelledError:
            self._set_end(EndReason.SERVER_SHUTDOWN, "server shutting down")
            raise
        finally:
            await self._cleanup()
            metrics.active_calls -= 1
            if self.deps.observer is not None:
                reason = self.end_reason or EndReason.SERVER_SHUTDOWN
                self.deps.observer.calls_ended.labels(str(reason)).inc()
        assert self.end_reason is not None
        return self.end_reason

    async def _greet(self) -> None:
        if self._announcing is not None:  # the recording announcement is heard first
            await asyncio.wait([self._announcing])
        if self.agent.greeting and self.model is not None:
            greeting = render(self.agent.greeting, self._context())
            await self.model.request_response(
                f'Greet the caller now. Say exactly: "{greeting}"'
            )

    async def _announce(self) -> None:
        """Play the recording announcement first (and record it); the model's first words
        wait until it has played. If it cannot be played, the call is not recorded."""
        assert self._recording is not None and self.deps.recordings is not None
        try:
            ulaw = await self.deps.recordings.announcements.audio(self.agent.recording.announce)
            seconds = await announce.play(self.audio, self._recording, ulaw)
        except Exception as exc:  # noqa: BLE001 - no announcement, no recording
            log.warning("call %s: announcement failed (%s); not recording", self.call_id, exc)
            self.deps.recorder.event(self.call_id, "recording_off",
                                     {"reason": f"the announcement could not be played: {exc}"})
            self._recording.discard()
            self._recording = None
            return
        self.playback.queued_ahead(seconds * 1000.0)
        await asyncio.sleep(seconds + announce.PAUSE_SECONDS)

    def _context(self) -> CallContext:
        info = self.audio.info
        # An outbound call's params are the ones it was placed with.
        params = info.outbound.params if info.outbound is not None else info.parameters
        return CallContext(
            caller_number=info.from_number, called_number=info.to_number,
            call_id=info.call_id, agent_name=self.agent.name, params=dict(params),
            timezone=self.agent.timezone,
        )

    async def _open_model(self) -> ModelSession | None:
        """The agent's model, else each fallback in turn; the record says which served."""
        context = self._context()
        instructions = render(self.agent.prompt, context)
        specs = tool_specs(self.agent)
        for model_id in [self.agent.model, *self.agent.fallback_models]:
            try:
                model = self.deps.catalog.model(model_id)
                opened = self.deps.open_model(self.agent, model, self.deps,
                                              instructions=instructions, tools=specs)
                session = opened.session
                await asyncio.wait_for(session.connect(), self.deps.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - any failure here means "try the next"
                if isinstance(exc, PlatformError | TimeoutError | OSError):
                    log.warning("call %s: model %s unavailable: %s", self.call_id, model_id, exc)
                else:
                    log.exception("call %s: opening model %s failed", self.call_id, model_id)
                if self.deps.observer is not None:
                    provider = model_id.split("/", 1)[0]
                    self.deps.observer.provider_errors.labels(provider, "connect").inc()
                self.deps.recorder.event(
                    self.call_id, "model_unavailable", {"model": model_id, "error": str(exc)}
                )
                continue
            self._configure_audio(session, passthrough=opened.audio_format == "g711_ulaw")
            self.model_id = model.id
            self._provider = model.provider.name
            self.deps.recorder.model_served(self.call_id, model.id)
            return session
        return None

    def _configure_audio(self, session: ModelSession, passthrough: bool) -> None:
        caps = session.capabilities
        self._passthrough = passthrough
        if passthrough:
            self._out_bytes_per_ms = 8.0
        else:
            self._to_model = make_resampler(8000, caps.input_rate)
            self._to_carrier = make_resampler(caps.output_rate, 8000)
            self._out_bytes_per_ms = caps.output_rate * 2 / 1000.0

    def _spawn(self, coro) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: task failed", self.call_id, exc_info=task.exception())
            self._set_end(EndReason.PROVIDER_ERROR, f"internal error: {task.exception()!r}")

    def end(self, reason: EndReason, detail: str = "") -> None:
        """End the call from outside it (an admin's hang-up): the carrier's line is hung
        up and the record closed with ``reason``, as any other ending."""
        self._set_end(reason, detail)

    def _set_end(self, reason: EndReason, detail: str = "") -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.end_detail = detail
        self._ended.set()

    async def _finish(self, reason: EndReason, detail: str = "") -> None:
        self._set_end(reason, detail)
        await self._cleanup()

    async def _cleanup(self) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.idle.stop()
        if self._recording is not None:
            self._recording.finish(self.playback)  # what was heard, even of a cut-off answer
        reason = self.end_reason or EndReason.SERVER_SHUTDOWN
        self._flush_pending_turns()
        if self.model is not None:
            with contextlib.suppress(Exception):
                await self.model.close()
        with contextlib.suppress(Exception):
            await self._release_carrier(reason)
        if self.audio.malformed_counts:  # what the carrier skipped, kept with the call
            self.deps.recorder.event(self.call_id, "malformed_frames",
                                     {str(k): n for k, n in self.audio.malformed_counts.items()})
        self.deps.recorder.call_ended(self.call_id, reason, self.end_detail)
        log.info("call ended: %s%s after %.1f s", reason.value,
                 f" ({self.end_detail})" if self.end_detail else "",
                 time.monotonic() - self._started_at)

    async def _release_carrier(self, reason: EndReason) -> None:
        if reason is EndReason.CALLER_HUNG_UP:
            await self.audio.close()
        elif reason is EndReason.TRANSFERRED:
            return  # the carrier's transfer, made before the end, handed the line over
        elif reason is EndReason.PROVIDER_ERROR:
            await self.audio.hang_up(say=APOLOGY)
        elif reason is EndReason.SERVER_SHUTDOWN:
            await self.audio.hang_up(say=SHUTDOWN_APOLOGY)
        else:
            await self.audio.hang_up()

    # ------------------------------------------------------------------ carrier → model

    async def _carrier_loop(self) -> None:
        handlers = self._carrier_handlers = {
            InboundAudio: self._on_inbound_audio,
            Dtmf: self._on_dtmf,
            MarkPlayed: self._on_mark,
            StreamStopped: self._on_stream_stopped,
            AnsweringMachine: self._on_answering_machine,
        }
        # A carrier that can hand events over as frames arrive (Twilio's on the media
        # listener, inside its socket's callback) skips this task's wake-up per frame;
        # ``events()`` then only says when the stream has ended.
        self._loop = asyncio.get_running_loop()
        self._carrier_context = contextvars.copy_context()  # the call id for its logs
        self.audio.deliver_to(self._on_carrier_event)
        async for event in self.audio.events():
            await handlers[type(event)](event)
            if self._ended.is_set():
                return
        while self._carrier_busy and not self._ended.is_set():  # what came before the end first
            await asyncio.sleep(0.01)
        if self._ended.is_set():
            return
        if self._ending and self._ending.transferring:  # a carrier may close it to hand over
            self._set_end(EndReason.TRANSFERRED, self._transfer_detail("stream closed"))
        else:
            self._set_end(EndReason.CALLER_HUNG_UP, "stream closed")

    def _on_carrier_event(self, event: Any) -> None:
        """One carrier event, as its frame arrives: as ``_on_model_event`` does for the
        model's. Its handler starts at once and almost always finishes without waiting
        (the model socket takes the audio at once); one that has to wait (the model
        reads slowly) becomes a task and the events after it queue, in order, the
        carrier holding its frames while that queue is long. Never raises."""
        if self._ended.is_set():
            return
        if self._carrier_busy:
            backlog = self._carrier_backlog
            backlog.append(event)
            if len(backlog) > CARRIER_BACKLOG_HOLD and not self._carrier_held:
                self._carrier_held = True
                self.audio.hold_delivery(True)
            return
        self._carrier_busy = True  # an event arriving while this one runs waits behind it
        task = asyncio.Task(self._carrier_handlers[type(event)](event), loop=self._loop,
                            context=self._carrier_context, eager_start=True)
        if task.done() and not self._carrier_backlog:
            self._carrier_busy = False
            if task.cancelled() or task.exception() is not None:
                self._task_done(task)
            return
        self._carrier_context.run(self._spawn, self._drain_carrier_events(task))

    async def _drain_carrier_events(self, waiting: asyncio.Task[None]) -> None:
        """Finish the handler that had to wait, then the events that queued behind it."""
        await waiting
        backlog, handlers = self._carrier_backlog, self._carrier_handlers
        while backlog and not self._ended.is_set():
            event = backlog.popleft()
            await handlers[type(event)](event)
            if self._carrier_held and len(backlog) <= CARRIER_BACKLOG_RELEASE:
                self._carrier_held = False
                self.audio.hold_delivery(False)
        backlog.clear()
        self._carrier_busy = False

    async def _on_inbound_audio(self, frame: InboundAudio) -> None:
        assert self.model is not None
        if self._recording is not None:
            self._recording.caller_audio(frame)
        if self.answering.muted:  # before the verdict, or a machine: the model hears nothing
            return
        if self._passthrough:
            await self.model.send_audio(frame.audio)
        else:
            await self.model.send_audio(self._to_model.process(ulaw_to_pcm16(frame.audio)))
        received = frame.received_at
        if received:
            elapsed = time.monotonic() - received
            self._inbound_ms(elapsed * 1000.0)
            if self._observe_in is not None:
                self._observe_in(elapsed)

    async def _on_dtmf(self, event: Dtmf) -> None:
        assert self.model is not None
        self.deps.recorder.event(self.call_id, "dtmf", {"digit": event.digit})
        self.idle.caller_active()
        await self.model.send_text(f"(The caller pressed {event.digit} on the keypad.)")

    async def _on_mark(self, event: MarkPlayed) -> None:
        item = self.playback.mark_played(event.name)
        if self._recording is not None:
            self._recording.agent_played(event.name)
        if item is not None and item.done and item.played_ms >= item.sent_ms - 0.5:
            self._record_assistant(item.item_id)
            self.idle.agent_finished()

    async def _on_stream_stopped(self, event: StreamStopped) -> None:
        if self._ending and self._ending.transferring:
            self._set_end(EndReason.TRANSFERRED, self._transfer_detail("stream ended"))
        elif event.reason in _CARRIER_END_REASONS:
            self._set_end(EndReason(event.reason), event.detail or event.reason)
        elif event.reason:  # a reason this bridge does not know: still the carrier's doing
            self._set_end(EndReason.CARRIER_ERROR, event.detail or event.reason)
        else:
            self._set_end(EndReason.CALLER_HUNG_UP, "caller hung up")

    # ------------------------------------------------------------------ answering machines

    async def _on_answering_machine(self, event: AnsweringMachine) -> None:
        self.deps.recorder.event(self.call_id, "answering_machine", {
            "verdict": event.verdict, "greeting_ended": event.greeting_ended,
            "detail": event.detail})
        await self._answer(self.answering.on_verdict(event))

    async def _hold_for_verdict(self) -> None:
        await asyncio.sleep(HOLD_SECONDS)
        decision = self.answering.hold_ran_out()
        if decision.step is Step.GREET:
            self.deps.recorder.event(self.call_id, "answering_machine",
                                     {"verdict": "none", "detail": f"none in {HOLD_SECONDS:g} s"})
        await self._answer(decision)

    async def _wait_for_beep(self) -> None:
        await asyncio.sleep(GREETING_END_SECONDS)
        await self._answer(self.answering.greeting_ran_long())

    async def _answer(self, decision: Decision) -> None:
        """Carry out what the answering gate decided (``bridge/answering.py``)."""
        if decision.interrupt:
            await self._stop_speaking()
        if decision.step is Step.GREET:
            await self._greet()
        elif decision.step is Step.HANG_UP:
            self._set_end(EndReason.MACHINE_DETECTED, f"answered by {self.answering.verdict}")
        elif decision.step is Step.AWAIT_BEEP:
            self._spawn(self._wait_for_beep())
        elif decision.step is Step.LEAVE_MESSAGE:
            self._spawn(self._leave_voicemail())

    async def _stop_speaking(self) -> None:
        """Drop what the agent is saying (to a machine, after the hold ran out)."""
        await self.audio.clear()
        self.playback.cleared()
        if self._to_carrier is not None:
            self._to_carrier.reset()
        if self.model is not None:
            await self.model.cancel_response()

    async def _leave_voicemail(self) -> None:
        """Speak the voicemail message through the model, wait until it has been
        played to the machine, then end the call ``voicemail_left``."""
        if self.model is None or self._ending is not None:
            return
        self._ending = _Ending(EndReason.VOICEMAIL_LEFT)
        self.state = CallState.ENDING
        self.deps.recorder.event(self.call_id, "ending",
                                 {"reason": EndReason.VOICEMAIL_LEFT.value})
        before = set(self.playback.items)
        await self.model.request_response(self.answering.voicemail_instruction())
        deadline = time.monotonic() + GOODBYE_GRACE_SECONDS + len(
            self.answering.voicemail_message) / 10.0
        while time.monotonic() < deadline:
            spoken = [i for key, i in self.playback.items.items() if key not in before]
            if spoken and all(i.done for i in spoken) and self.playback.all_played():
                break
            await asyncio.sleep(0.05)
        self._set_end(EndReason.VOICEMAIL_LEFT, f"answered by {self.answering.verdict}")

    # ------------------------------------------------------------------ model → carrier

    async def _model_loop(self) -> None:
        assert self.model is not None
        if self._announcing is not None:  # nothing the model says plays before it
            await asyncio.wait([self._announcing])
        handlers = self._model_handlers = {
            AudioDelta: self._on_audio_delta,
            AudioDone: self._on_audio_done,
            Transcript: self._on_transcript,
            SpeechStarted: self._on_speech_started,
            SpeechStopped: self._on_speech_stopped,
            ToolCall: self._on_tool_call,
            ResponseDone: self._on_response_done,
            SessionNotice: self._on_notice,
            SessionError: self._on_error,
        }
        # A session that can hand events over as they arrive (OpenAI's, inside its
        # socket's callback) skips the queue and this task's wake-up per delta;
        # ``events()`` then only says when the session has ended.
        deliver_to = getattr(self.model, "deliver_to", None)
        if deliver_to is not None:
            self._loop = asyncio.get_running_loop()
            self._model_context = contextvars.copy_context()  # the call id for its logs
            deliver_to(self._on_model_event)
        async for event in self.model.events():
            await handlers[type(event)](event)
            if self._ended.is_set():
                return
        while self._model_busy and not self._ended.is_set():  # what came before the end first
            await asyncio.sleep(0.01)
        self._set_end(EndReason.PROVIDER_ERROR, "model session ended")

    def _on_model_event(self, event: ModelEvent) -> None:
        """One model event, as it arrives. Its handler starts at once and, as almost
        every one does, finishes without waiting: no task switch, no queue. One that
        has to wait (the carrier socket is behind) becomes a task, and the events after
        it queue until it is done, so they are handled in the order they came, as the
        loop above does. Never raises: a failed handler ends the call, as a failed
        task does."""
        if self._ended.is_set():
            return
        if self._model_busy:
            self._model_backlog.append(event)
            return
        self._model_busy = True  # an event arriving while this one runs waits behind it
        task = asyncio.Task(self._model_handlers[type(event)](event), loop=self._loop,
                            context=self._model_context, eager_start=True)
        if task.done() and not self._model_backlog:
            self._model_busy = False
            if task.cancelled() or task.exception() is not None:
                self._task_done(task)
            return
        # In the call's context, as the handlers it runs (their log lines name the call).
        self._model_context.run(self._spawn, self._drain_model_events(task))

    async def _drain_model_events(self, waiting: asyncio.Task[None]) -> None:
        """Finish the handler that had to wait, then the events that queued behind it."""
        await waiting
        backlog, handlers = self._model_backlog, self._model_handlers
        while backlog and not self._ended.is_set():
            event = backlog.popleft()
            await handlers[type(event)](event)
        backlog.clear()
        self._model_busy = False

    async def _on_audio_delta(self, event: AudioDelta) -> None:
        received = event.received_at or time.monotonic()
        item_id, audio = event.item_id, event.audio
        playback = self.playback
        first = item_id not in playback.items
        ulaw = audio if self._passthrough else pcm16_to_ulaw(self._to_carrier.process(audio))
        mark = playback.sent(item_id, len(audio) / self._out_bytes_per_ms)
        if first:
            await self.audio.send_audio(ulaw)
            self._start_of_answer(item_id, received, time.monotonic())
            self.idle.agent_speaking()
            await self.audio.send_mark(mark)
        else:  # the chunk and its mark in one call (``CallAudio.send_audio_marked``)
            await self.audio.send_audio_marked(ulaw, mark)
        if self._recording is not None:
            self._recording.agent_sent(mark, item_id, ulaw)
        elapsed = time.monotonic() - received
        self._outbound_ms(elapsed * 1000.0)
        if self._observe_out is not None:
            self._observe_out(elapsed)

    def _start_of_answer(self, item_id: str, received: float, sent: float) -> None:
        """The first audio of an answer has gone to the carrier: time the turn."""
        if self._speech_stopped_at is None:
            return  # the greeting, or an answer nobody's speech prompted
        stopped = self._speech_stopped_at
        notice, self._turn_notice = self._turn_notice, None
        parts = turn_latency.split(
            waited_ms=self._turn_waited_ms, model_ms=(received - stopped) * 1000.0,
            sent_after_ms=(sent - received) * 1000.0, tool_ms=self._tool_ms_in_turn,
            cascade=notice.detail if notice is not None else None)
        timing = _TurnTiming(latency_ms=turn_latency.total(parts),
                             model_ms=(received - stopped) * 1000.0,
                             tool_ms=self._tool_ms_in_turn, parts=parts)
        self._turn_timing[item_id] = timing
        self._speech_stopped_at = None
        self._tool_ms_in_turn = 0.0
        # The one figure of this answer, in the events beside the model's own notice.
        self.deps.recorder.event(self.call_id, "turn_latency",
                                 {"latency_ms": round(timing.latency_ms),
                                  **{f"{k}_ms": v for k, v in parts.items()}})
        obs = self.deps.observer
        if obs is not None:
            obs.turn_latency.observe(timing.latency_ms / 1000.0)
            obs.model_first_audio.observe(timing.model_ms / 1000.0)

    async def _on_audio_done(self, event: AudioDone) -> None:
        item = self.playback.items.get(event.item_id)
        if item is not None:
            item.done = True
            if item.played_ms >= item.sent_ms - 0.5:  # its last mark came back first
                self.idle.agent_finished()

    async def _on_speech_started(self, event: SpeechStarted) -> None:
        """Barge-in: stop the carrier's playback at once, then tell the model what was heard."""
        started = time.monotonic()
        if self.answering.muted:  # leaving a voicemail: barge-in is off
            return
        self.idle.caller_active()
        if self._recording is not None:
            self._recording.speech_started()
        item = self.playback.current
        # Clear while an answer is still coming or still queued: even when the
        # carrier's buffer happens to be empty, audio may be in flight to it.
        if item is None or (item.done and not self.playback.playing(started)):
            return
        await self.audio.clear()
        self.deps.metrics.barge_in_ms.add((time.monotonic() - started) * 1000.0)
        heard = self.playback.heard_ms(item.item_id, started)
        if self._recording is not None:  # the recording stops where the caller stopped hearing
            self._recording.agent_cut(item.item_id, heard)
        self._heard_fraction[item.item_id] = heard / item.sent_ms if item.sent_ms else 0.0
        self.playback.cleared()
        if self._to_carrier is not None:
            self._to_carrier.reset()
        assert self.model is not None
        if self.model.capabilities.truncates:
            self.deps.metrics.truncates += 1
            await self.model.truncate(item.item_id, heard)
        await self.model.cancel_response()
        if self.deps.observer is not None:
            self.deps.observer.interruptions.inc()
        self.deps.recorder.event(
            self.call_id, "barge_in", {"item_id": item.item_id, "heard_ms": heard,
                                       "sent_ms": round(item.sent_ms)},
        )
        if item.item_id in self._pending_assistant:
            self._record_assistant(item.item_id)

    async def _on_speech_stopped(self, event: SpeechStopped) -> None:
        self._speech_stopped_at = time.monotonic()
        self._turn_waited_ms = event.waited_ms
        self._turn_notice = None
        self._tool_ms_in_turn = 0.0

    async def _on_transcript(self, event: Transcript) -> None:
        if not event.final or not event.text.strip():
            return
        if event.role == "user":
            self.deps.recorder.turn(self.call_id, "user", event.text)
            self.idle.caller_active()
            if self._recording is not None:
                self._recording.turn("user")
            return
        self._pending_assistant[event.item_id] = _PendingTurn(
            event.text, self._turn_timing.pop(event.item_id, None)
        )
        item = self.playback.items.get(event.item_id)
        finished = item is None or (item.done and item.played_ms >= item.sent_ms - 0.5)
        if event.item_id in self._heard_fraction or finished:
            self._record_assistant(event.item_id)

    def _record_assistant(self, item_id: str) -> None:
        pending = self._pending_assistant.pop(item_id, None)
        if pending is None:
            return
        fraction = self._heard_fraction.pop(item_id, None)
        text = pending.text if fraction is None else _cut_to_fraction(pending.text, fraction)
        timing = pending.timing
        if self._recording is not None:
            self._recording.turn("assistant", item_id)
        self.deps.recorder.turn(
            self.call_id, "assistant", text, interrupted=fraction is not None,
            latency_ms=timing.latency_ms if timing else None,
            model_ms=timing.model_ms if timing else None,
            tool_ms=timing.tool_ms if timing else None,
            parts=timing.parts if timing else None,
        )

    def _flush_pending_turns(self) -> None:
        for item_id in list(self._pending_assistant):
            item = self.playback.items.get(item_id)
            if item is not None and item.played_ms < item.sent_ms - 0.5 and item.sent_ms:
                self._heard_fraction.setdefault(item_id, self.playback.heard_ms(item_id) / item.sent_ms)
            self._record_assistant(item_id)

    async def _on_response_done(self, event: ResponseDone) -> None:
        if event.usage is not None:
            self.deps.recorder.usage(self.call_id, self.model_id, event.usage)
        if self._ending is not None:
            self._ending.response_done.set()

    async def _on_notice(self, event: SessionNotice) -> None:
        if event.kind == turn_latency.CASCADE_NOTICE and self._speech_stopped_at is not None:
            # The cascade's split of the turn it is answering: folded into the one
            # figure; its own end-to-end sum, on another clock, is not kept beside it.
            self._turn_notice = event
            event = SessionNotice(event.kind, {k: v for k, v in event.detail.items()
                                               if k != "turn_ms"})
        self.deps.recorder.event(self.call_id, event.kind, event.detail)
        if self.deps.observer is not None and event.kind in RECONNECT_NOTICES:
            self.deps.observer.provider_reconnects.labels(self._provider, event.kind).inc()

    async def _on_error(self, event: SessionError) -> None:
        if self.deps.observer is not None:
            fatal = "fatal" if event.fatal else "recovered"
            self.deps.observer.provider_errors.labels(self._provider, fatal).inc()
        self.deps.recorder.event(
            self.call_id, "model_error",
            {"code": event.code, "message": event.message, "fatal": event.fatal},
        )
        if event.fatal:
            self._set_end(EndReason.PROVIDER_ERROR, f"{event.code}: {event.message}")

    # ------------------------------------------------------------------ tools and endings

    async def _on_tool_call(self, event: ToolCall) -> None:
        self._spawn(self._run_tool(event))

    async def _run_tool(self, event: ToolCall) -> None:
        self.idle.tool_started()  # the caller is waiting on us, not silent
        try:
            outcome = await self.tools.run(event.name, event.arguments)
        finally:
            self.idle.tool_finished()
        if isinstance(outcome.action, SendDtmf):
            outcome = await self._press_keys(outcome, outcome.action)
        if self._speech_stopped_at is not None:  # the caller is waiting on this tool
            self._tool_ms_in_turn += outcome.duration_ms
        if self.deps.observer is not None:
            self.deps.observer.tool_seconds.labels(event.name).observe(outcome.duration_ms / 1000)
        self.deps.recorder.tool_invocation(
            self.call_id, event.name, event.arguments, outcome.output,
            ok=outcome.ok, duration_ms=outcome.duration_ms,
        )
        if isinstance(outcome.action, EndCall):
            self._begin_ending(EndReason.AGENT_ENDED)
        elif isinstance(outcome.action, Transfer):
            self._begin_ending(EndReason.TRANSFERRED, outcome.action)
        if self.model is not None and not self._ended.is_set():
            await self.model.send_tool_result(event.call_id, event.name, outcome.output)

    async def _press_keys(self, outcome: ToolOutcome, action: SendDtmf) -> ToolOutcome:
        """Send the keys through the carrier now (the model waits for the result);
        a carrier that cannot turns the result into a failure the model hears."""
        started = time.perf_counter()
        try:
            await self.audio.send_dtmf(action.digits)
        except CarrierError as exc:
            output, ok = f"The keys could not be pressed: {exc}", False
        else:
            output, ok = outcome.output, True
        elapsed = outcome.duration_ms + (time.perf_counter() - started) * 1000.0
        return dataclasses.replace(outcome, output=output, ok=ok, duration_ms=round(elapsed, 1))

    def _begin_ending(self, reason: EndReason, transfer: Transfer | None = None) -> None:
        if self._ending is not None:
            return
        self._ending = _Ending(reason, transfer)
        self.state = CallState.ENDING
        self.deps.recorder.event(self.call_id, "ending", {"reason": reason.value})
        self._spawn(self._end_after_goodbye())

    async def _end_after_goodbye(self) -> None:
        """Let the goodbye (or the handoff) be generated and heard, then end the call
        or transfer it."""
        ending = self._ending
        assert ending is not None
        deadline = time.monotonic() + GOODBYE_GRACE_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ending.response_done.wait(), GOODBYE_GRACE_SECONDS)
        while not self.playback.all_played() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if ending.transfer is None:
            self._set_end(ending.reason)
        else:
            await self._transfer(ending, ending.transfer)

    def _transfer_detail(self, how: str) -> str:
        """The record's detail when the carrier ended the line for a transfer before
        its request returned: still names the target."""
        transfer = self._ending.transfer if self._ending is not None else None
        target = f"to {transfer.destination}; " if transfer is not None else ""
        return f"{target}{how} by transfer"

    async def _transfer(self, ending: _Ending, transfer: Transfer) -> None:
        """Hand the caller over while the model session is still open, so that a
        transfer the carrier could not make leaves the caller with the agent."""
        ending.transferring = True
        timeout = self.deps.transfer_timeout
        try:
            await asyncio.wait_for(self.audio.transfer(transfer.number), timeout)
        except CarrierError as exc:
            detail = str(exc) or type(exc).__name__
        except TimeoutError:
            detail = f"the carrier did not finish the transfer within {timeout:g} s"
        else:
            self._set_end(EndReason.TRANSFERRED, f"to {transfer.destination}")
            return
        if self._ended.is_set():
            return  # the line ended meanwhile; that end stands
        await self._transfer_failed(transfer, detail)

    async def _transfer_failed(self, transfer: Transfer, detail: str) -> None:
        """The call goes on: recorded, and the model told, so it tells the caller."""
        log.warning("call %s: transfer to %s failed: %s", self.call_id, transfer.destination, detail)
        self.deps.recorder.event(self.call_id, "transfer_failed", {
            "destination": transfer.destination, "number": transfer.number, "detail": detail,
        })
        self._ending = None
        self._transition((CallState.ENDING,), CallState.LIVE)
        if self.model is None:
            return
        note = TRANSFER_FAILED_NOTE.format(destination=transfer.destination)
        # The time limit passed during the transfer: the caller hears both at once.
        await self.model.send_text(note, respond=not self._limit_passed)
        if self._limit_passed:
            await self._end_for_limit()

    def _on_idle_prompt(self, count: int) -> None:
        if self.model is None or self._ending is not None or self._ended.is_set():
            return
        self.deps.recorder.event(self.call_id, "idle_prompt", {"count": count})
        self._spawn(self.model.request_response(IDLE_PROMPT))

    def _on_idle_give_up(self) -> None:
        if self.model is None or self._ending is not None or self._ended.is_set():
            return
        self._begin_ending(EndReason.IDLE_TIMEOUT)
        self._spawn(self.model.request_response(IDLE_GOODBYE))

    async def _limit_timer(self) -> None:
        await asyncio.sleep(self.agent.limits.max_call_seconds)
        self._limit_passed = True
        if self._ending is None:
            await self._end_for_limit()

    async def _end_for_limit(self) -> None:
        if self.model is None:
            return
        self.deps.recorder.event(self.call_id, "limit_reached",
                                 {"max_call_seconds": self.agent.limits.max_call_seconds})
        self._begin_ending(EndReason.LIMIT_REACHED)
        await self.model.request_response(
            "The call has reached its time limit. Say a short, polite goodbye now."
        )


def _cut_to_fraction(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, cut at a word boundary: what was heard."""
    if fraction >= 1.0:
        return text
    cut = int(len(text) * max(0.0, fraction))
    space = text.rfind(" ", 0, cut + 1)
    return (text[: space if space > 0 else cut]).rstrip() + " …"
