"""The dial service: the one way the platform places a call (API, CLI, campaigns).

Order matters, so that nothing is dialed that is not accounted for:

1. the request is checked (agent loaded, carrier enabled and able to dial, numbers,
   params, machine detection) — a bad one is refused before anything is recorded;
2. spend controls, as for an inbound call: the drain, the agent's and the platform's
   daily budget, and a concurrency slot of the agent's ``max_concurrent_calls``,
   held under the platform call id from now until the call ends (a ringing call
   counts). A refusal is recorded (an outbound row that starts and ends at once);
3. the call record is written ``queued`` under a freshly minted platform call id;
4. only then does the carrier dial. It reports ``ringing`` and its own call id
   (``CarrierContext.dial_progress``), then either hands the answered call to the
   bridge (``in_progress``, same record) or reports why nobody answered
   (``CarrierContext.dial_ended``: ``busy``, ``no_answer``, ``failed``).

A carrier that cannot even start the attempt closes the record ``failed``, frees the
slot, and the caller of ``dial`` gets ``DialRefused`` with the call id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agentplatform.agents.spec import AgentSpec
from agentplatform.agents.store import AgentStore
from agentplatform.carriers.dialing import OutboundRequest
from agentplatform.carriers.plugin import Carrier
from agentplatform.errors import CarrierError
from agentplatform.limits.admission import Admission
from agentplatform.limits.gate import Refusal
from agentplatform.observability.metrics import PlatformMetrics
from agentplatform.outbound.request import DialRequest, request_problem
from agentplatform.records import CallStart, EndReason

log = logging.getLogger(__name__)

# The carrier tried when a request names none, first that can dial.
DEFAULT_CARRIER_ORDER = ("twilio", "sip")


class DialRefusal:
    """Why ``dial`` refused: the values of ``DialRefused.reason``."""

    INVALID = "invalid"  # the request itself is wrong (a number, params, voicemail)
    UNKNOWN_AGENT = "unknown_agent"  # no such agent loaded
    CARRIER_UNAVAILABLE = "carrier_unavailable"  # none enabled, or it cannot dial now
    BUSY = EndReason.BUSY.value  # the agent's max_concurrent_calls are all live
    OVER_BUDGET = EndReason.OVER_BUDGET.value  # the agent's or platform's budget is spent
    DRAINING = EndReason.DRAINING.value  # the server is shutting down
    FAILED = EndReason.FAILED.value  # the carrier could not start the attempt


class DialRefused(Exception):
    """A call that was not placed. ``call_id`` is set when a record was written
    (spend-control refusals and carrier failures are recorded; bad requests are not)."""

    def __init__(self, reason: str, message: str, call_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.call_id = call_id


class OutboundRecorder(Protocol):
    """What the dialer writes (``storage/writer.CallWriter``); returns at once."""

    def call_queued(self, start: CallStart, machine_detection: str) -> None: ...

    def call_ended(self, call_id: str, reason: EndReason, detail: str = "") -> None: ...


@dataclass(slots=True)
class Dialer:
    """Places calls for the platform; one per server process."""

    store: AgentStore
    carriers: Sequence[Carrier]
    recorder: OutboundRecorder
    admission: Admission | None = None
    observer: PlatformMetrics | None = None

    async def dial(self, request: DialRequest) -> str:
        """Place ``request``; returns the platform call id once the carrier has the
        attempt under way (the record says ``queued``, then ``ringing``…).
        Raises ``DialRefused`` with a reason from ``DialRefusal``."""
        await self.store.refresh_async()  # edited agent files, parsed off the loop
        loaded = self.store.get(request.agent)
        if loaded is None:
            raise DialRefused(DialRefusal.UNKNOWN_AGENT,
                              f"no agent named {request.agent[:64]!r} is loaded")
        carrier = self._carrier(request.carrier)
        spec = loaded.spec
        from_number = request.from_number or (spec.phone_numbers[0] if spec.phone_numbers else "")
        if not from_number:
            raise DialRefused(DialRefusal.INVALID, f"from is required: agent {spec.name} has no "
                                                   "phone_numbers to call from")
        problem = request_problem(request, carrier.name)
        if problem is not None:
            raise DialRefused(DialRefusal.INVALID, problem)
        outbound = OutboundRequest(
            call_id=uuid.uuid4().hex, agent=spec.name, to_number=request.to_number,
            from_number=from_number, carrier=carrier.name, params=dict(request.params),
            machine_detection=request.machine_detection,
            voicemail_message=request.voicemail_message, campaign_id=request.campaign_id,
        )
        await self._admit(outbound, spec)
        self.recorder.call_queued(_start(outbound, spec), outbound.machine_detection.value)
        log.info("call %s: dialing %s for agent %s over %s", outbound.call_id,
                 outbound.to_number, spec.name, carrier.name)
        try:
            await carrier.place_call(outbound)
        except CarrierError as exc:
            log.warning("call %s: %s could not place the call: %s", outbound.call_id,
                        carrier.name, exc)
            self.recorder.call_ended(outbound.call_id, EndReason.FAILED, str(exc))
            await self.release(outbound.call_id)
            self._count_end(EndReason.FAILED)
            raise DialRefused(DialRefusal.FAILED, f"the {carrier.name} carrier could not place "
                                                  f"the call: {exc}", outbound.call_id) from exc
        return outbound.call_id

    async def release(self, call_id: str) -> None:
        """Give back the concurrency slot held for ``call_id`` (the call is over)."""
        if self.admission is not None:
            await self.admission.release(call_id)

    # ------------------------------------------------------------ checks

    def _carrier(self, name: str) -> Carrier:
        enabled = {c.name: c for c in self.carriers}
        if name:
            carrier = enabled.get(name)
            if carrier is None:
                raise DialRefused(DialRefusal.CARRIER_UNAVAILABLE,
                                  f"no carrier named {name[:32]!r} is enabled "
                                  f"(enabled: {', '.join(sorted(enabled)) or 'none'})")
            problem = carrier.dial_problem()
            if problem is not None:
                raise DialRefused(DialRefusal.CARRIER_UNAVAILABLE, problem)
            return carrier
        order = [*DEFAULT_CARRIER_ORDER, *sorted(set(enabled) - set(DEFAULT_CARRIER_ORDER))]
        problems = []
        for candidate in (enabled[n] for n in order if n in enabled):
            problem = candidate.dial_problem()
            if problem is None:
                return candidate
            if candidate.can_dial:
                problems.append(problem)
        raise DialRefused(DialRefusal.CARRIER_UNAVAILABLE,
                          "no enabled carrier can place calls" +
                          (f": {'; '.join(problems)}" if problems else ""))

    async def _admit(self, outbound: OutboundRequest, spec: AgentSpec) -> None:
        """Spend controls; the slot, if the agent has a limit, is held from here on."""
        admission = self.admission
        if admission is None:
            return
        if admission.drain.draining:
            refusal: Refusal | None = Refusal(EndReason.DRAINING, admission.drain.message,
                                              "the server is shutting down")
        else:
            refusal = await admission.gate.claim(outbound.call_id, spec)
        if refusal is None:
            return
        log.info("call %s to %s refused: %s (%s)", outbound.call_id, outbound.to_number,
                 refusal.reason, refusal.detail)
        self.recorder.call_queued(_start(outbound, spec), outbound.machine_detection.value)
        self.recorder.call_ended(outbound.call_id, refusal.reason, refusal.detail)
        if self.observer is not None:
            self.observer.calls_refused.labels(str(refusal.reason)).inc()
        self._count_end(refusal.reason)
        raise DialRefused(refusal.reason.value, refusal.detail, outbound.call_id)

    def _count_end(self, reason: EndReason) -> None:
        if self.observer is not None:
            self.observer.calls_ended.labels(str(reason)).inc()


def _start(outbound: OutboundRequest, spec: AgentSpec) -> CallStart:
    return CallStart(
        call_id=outbound.call_id, carrier_call_id="", agent=spec.name, model=spec.model,
        carrier=outbound.carrier, from_number=outbound.from_number,
        to_number=outbound.to_number, parameters=dict(outbound.params), outbound=True,
    )
