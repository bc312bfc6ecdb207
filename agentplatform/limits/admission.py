"""Admission: whether a new call is taken, and what happens to one that is not.

Joins the spend-control gate, the shutdown drain, the call records and the
metrics, so the application wires one object and the carrier routes ask one
question. Every refused call is recorded — a call row that starts and ends at
once with its reason (``busy``, ``over_budget``, ``caller_limit``, ``draining``)
and no model — so admins see refusals in the calls list, and the cost of a refused
call is zero because no model session ever opened.
"""

from __future__ import annotations

import logging
import uuid

from agentplatform.agents.spec import AgentSpec
from agentplatform.carriers.base import CallAudio
from agentplatform.cascade.capacity import CASCADE_CAPACITY
from agentplatform.limits.drain import Drain
from agentplatform.limits.gate import CallGate, Refusal
from agentplatform.limits.headroom import Headroom, decide
from agentplatform.observability.metrics import PlatformMetrics
from agentplatform.records import CallRecorder, CallStart, EndReason

log = logging.getLogger(__name__)


class Admission:
    def __init__(self, gate: CallGate, drain: Drain, recorder: CallRecorder,
                 metrics: PlatformMetrics | None = None, headroom: Headroom | None = None,
                 busy_message: str = "") -> None:
        self.gate = gate
        self.drain = drain
        # This process's room for one more call (overload shedding); None = not checked.
        self.headroom = headroom
        self._busy_message = busy_message
        self._recorder = recorder
        self._metrics = metrics
        self._gate_errors_seen = 0

    def unready(self) -> str | None:
        """Why this process should get no new calls now (draining, or no headroom for
        one more), else ``None``: what ``/readyz`` tells a load balancer. Nothing is
        counted, unlike a refusal."""
        if self.drain.draining:
            return "draining"
        if self.headroom is not None and self.headroom.enabled:
            reason = decide(self.headroom.figures(), self.headroom.limits)
            if reason is not None:
                return f"overloaded: {reason}"
        return None

    async def at_arrival(self, carrier: str, call_sid: str, agent: AgentSpec, from_number: str,
                         to_number: str) -> str | None:
        """Before the carrier sets anything up (a webhook, an INVITE): ``None`` to take
        the call; else the sentence the caller hears before the carrier hangs up (no
        stream is opened). The refusal is recorded under ``carrier``."""
        if self.drain.draining:
            refusal = Refusal(EndReason.DRAINING, self.drain.message, "server is shutting down")
        elif self.headroom is not None and (overloaded := self.headroom.admit()) is not None:
            # The live calls keep their latency; this one hears the busy message.
            refusal = Refusal(EndReason.BUSY, self._busy_message, f"overloaded: {overloaded}")
        elif (engines_full := CASCADE_CAPACITY.refusal(agent)) is not None:
            # The local speech engines cannot answer one more caller in time.
            refusal = Refusal(EndReason.BUSY, self._busy_message, engines_full)
        else:
            refusal = await self.gate.admit(call_sid, agent, from_number)
            self._count_gate_errors()
        if refusal is None:
            return None
        self._record(refusal, carrier, call_sid, agent, from_number, to_number)
        return refusal.message

    async def at_stream(self, audio: CallAudio, agent: AgentSpec) -> bool:
        """Before the model session opens, the checks again (draining, budget, the
        call's concurrency slot): a stream that did not pass the webhook (a browser
        call), or that starts after the drain began, is held to them too. On refusal
        the caller hears the message through the carrier's hang-up and no model
        session opens."""
        info = audio.info
        if self.drain.draining:  # admitted at the webhook before the drain began
            refusal: Refusal | None = Refusal(EndReason.DRAINING, self.drain.message,
                                              "server is shutting down")
        elif (engines_full := CASCADE_CAPACITY.refusal(agent)) is not None:
            refusal = Refusal(EndReason.BUSY, self._busy_message, engines_full)
        else:
            # An outbound call renews the slot the dial service took under its own id.
            holder = info.outbound.call_id if info.outbound is not None else info.call_id
            refusal = await self.gate.claim(holder, agent)
            self._count_gate_errors()
        if refusal is None:
            return True
        if info.outbound is not None:  # its record exists since it was queued: close it
            log.info("refused answered outbound call %s: %s (%s)", info.outbound.call_id,
                     refusal.reason, refusal.detail)
            self._recorder.call_ended(info.outbound.call_id, refusal.reason, refusal.detail)
            self._count_refusal(refusal)
        else:
            self._record(refusal, info.carrier, info.call_id, agent, info.from_number,
                         info.to_number)
        await audio.hang_up(say=refusal.message)
        return False

    async def release(self, call_sid: str) -> None:
        await self.gate.release(call_sid)

    async def call_finished_at_carrier(self, call_sid: str) -> None:
        """The carrier says the call is over; a slot reserved at the webhook for a
        stream that never started is freed now rather than at lease expiry."""
        await self.gate.release_unclaimed(call_sid)

    def _record(self, refusal: Refusal, carrier: str, call_sid: str, agent: AgentSpec,
                from_number: str, to_number: str) -> None:
        log.info("refused call %s to %s from %s: %s (%s)", call_sid, agent.name, from_number,
                 refusal.reason, refusal.detail)
        call_id = uuid.uuid4().hex
        self._recorder.call_started(CallStart(
            call_id=call_id, carrier_call_id=call_sid, agent=agent.name, model=agent.model,
            carrier=carrier, from_number=from_number, to_number=to_number,
        ))
        self._recorder.call_ended(call_id, refusal.reason, refusal.detail)
        self._count_refusal(refusal)

    def _count_refusal(self, refusal: Refusal) -> None:
        if self._metrics is not None:
            self._metrics.calls_refused.labels(str(refusal.reason)).inc()
            self._metrics.calls_ended.labels(str(refusal.reason)).inc()

    def _count_gate_errors(self) -> None:
        if self._metrics is not None and self.gate.errors > self._gate_errors_seen:
            self._metrics.limit_check_errors.inc(self.gate.errors - self._gate_errors_seen)
        self._gate_errors_seen = self.gate.errors
