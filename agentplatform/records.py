"""What the bridge reports about a call, and the port it reports through.

The bridge calls a ``CallRecorder``; every method returns at once (the storage
writer queues the work), so the audio path never waits on a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from agentplatform.realtime.base import Usage


class EndReason(StrEnum):
    CALLER_HUNG_UP = "caller_hung_up"
    AGENT_ENDED = "agent_ended"
    TRANSFERRED = "transferred"
    LIMIT_REACHED = "limit_reached"
    PROVIDER_ERROR = "provider_error"
    CARRIER_ERROR = "carrier_error"
    # No media from the caller for the carrier's timeout (SIP: SIP_RTP_TIMEOUT_SECONDS);
    # the carrier hung up a line that had gone dead.
    MEDIA_TIMEOUT = "media_timeout"
    SERVER_SHUTDOWN = "server_shutdown"
    # The process serving the call died (its liveness lease ran out); closed by
    # another process with what was recorded until then.
    SERVER_LOST = "server_lost"
    COMPLETED = "completed"  # a status callback closed a call the stream never did
    # Refused before any model session opened (spend controls, shutdown).
    BUSY = "busy"  # the agent's max_concurrent_calls was reached
    OVER_BUDGET = "over_budget"  # the agent's or the platform's daily budget was spent
    CALLER_LIMIT = "caller_limit"  # the caller's daily call cap for this agent was reached
    DRAINING = "draining"  # the server is shutting down
    # Outbound calls that never reached a conversation. ``busy`` above also stands for
    # a callee whose line was busy (SIP 486/600, Twilio ``busy``): both are retried.
    NO_ANSWER = "no_answer"  # rang until the ring timeout, or the callee declined
    FAILED = "failed"  # the carrier could not place the call (bad number, trunk error)
    # Answering-machine detection: a machine answered and the agent hung up, or left
    # the agent's voicemail message and then hung up.
    MACHINE_DETECTED = "machine_detected"
    VOICEMAIL_LEFT = "voicemail_left"
    # The caller said nothing through ``limits.idle_prompts_max`` prompts.
    IDLE_TIMEOUT = "idle_timeout"
    # An admin hung up the live call from the call's page.
    ADMIN_HUNG_UP = "admin_hung_up"


REFUSED_REASONS = frozenset(
    {EndReason.BUSY, EndReason.OVER_BUDGET, EndReason.CALLER_LIMIT, EndReason.DRAINING}
)

# Outbound outcomes a campaign dials again later (with back-off).
RETRYABLE_OUTBOUND_REASONS = frozenset({EndReason.BUSY, EndReason.NO_ANSWER})


@dataclass(slots=True)
class CallStart:
    call_id: str  # platform id (uuid hex)
    carrier_call_id: str
    agent: str
    model: str
    carrier: str  # the carrier plug-in's registry name, from CallInfo.carrier
    from_number: str = ""
    to_number: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    # A call the platform placed: its row was written ``queued`` by the dial service
    # under ``call_id``, so starting it updates that row instead of adding one.
    outbound: bool = False


class CallRecorder(Protocol):
    def call_started(self, start: CallStart) -> None: ...

    def turn(
        self, call_id: str, role: str, text: str, *, interrupted: bool = False,
        latency_ms: float | None = None, model_ms: float | None = None,
        tool_ms: float | None = None, parts: dict[str, float] | None = None,
    ) -> None:
        """``latency_ms``: caller stopped speaking → first answer audio sent to the
        carrier (the end-of-turn wait included); ``model_ms``: the end of the turn →
        first answer audio received from the model; ``tool_ms``: tool time inside that
        wait; ``parts``: ``latency_ms`` split by where it went (``observability/
        turn_latency.py``)."""

    def tool_invocation(
        self, call_id: str, name: str, arguments: str, result: str, *, ok: bool,
        duration_ms: float,
    ) -> None: ...

    def event(self, call_id: str, kind: str, detail: dict[str, Any] | None = None) -> None: ...

    def usage(self, call_id: str, model: str, usage: Usage) -> None: ...

    def model_served(self, call_id: str, model: str) -> None: ...

    def call_ended(self, call_id: str, reason: EndReason, detail: str = "") -> None: ...

    def close_by_carrier_id(self, carrier_call_id: str, reason: EndReason) -> None: ...


class NullRecorder:
    """Records nothing; for tools and tests that do not care."""

    def call_started(self, start: CallStart) -> None: ...
    def turn(self, call_id, role, text, *, interrupted=False, latency_ms=None, model_ms=None,
             tool_ms=None, parts=None) -> None: ...
    def tool_invocation(self, call_id, name, arguments, result, *, ok, duration_ms) -> None: ...
    def event(self, call_id, kind, detail=None) -> None: ...
    def usage(self, call_id, model, usage) -> None: ...
    def model_served(self, call_id, model) -> None: ...
    def call_ended(self, call_id, reason, detail="") -> None: ...
    def close_by_carrier_id(self, carrier_call_id, reason) -> None: ...
