"""The phone-side seam. A carrier turns its wire protocol into ``CallAudio``:
inbound events, and a handful of things the bridge can do to the call.

Audio both ways is G.711 μ-law at 8 kHz, the telephone's own format.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agentplatform.carriers.dialing import AnsweringMachine, OutboundRequest


@dataclass(slots=True)
class CallInfo:
    """Who called whom, as the carrier told us at stream start."""

    call_id: str  # the carrier's call id (Twilio CallSid, SIP Call-ID)
    stream_id: str
    # The registry name of the carrier that took the call ("twilio", "browser", "sip");
    # recorded with every call and labels its malformed-message counts.
    carrier: str
    from_number: str = ""
    to_number: str = ""
    agent: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    # Set on a call the platform placed (``carriers/dialing.py``): its record already
    # exists under ``outbound.call_id``, and it says what to do with a machine.
    outbound: OutboundRequest | None = None


@dataclass(slots=True)
class InboundAudio:
    audio: bytes  # μ-law 8 kHz
    timestamp_ms: int  # carrier's media clock, ms since stream start
    received_at: float = 0.0  # time.monotonic() when the frame arrived


@dataclass(slots=True)
class Dtmf:
    digit: str


@dataclass(slots=True)
class MarkPlayed:
    name: str


@dataclass(slots=True)
class StreamStopped:
    """The carrier ended the stream (caller hung up, or new TwiML took over).

    ``reason`` is empty when the caller hung up; otherwise the carrier says why it
    ended the line itself, as an end-reason value (``"media_timeout"``: no audio came
    for the carrier's timeout; ``"carrier_error"``: the signalling failed, ``detail``
    says how). The bridge records it; it knows no carrier.
    """

    reason: str = ""
    detail: str = ""


CarrierEvent = InboundAudio | Dtmf | MarkPlayed | StreamStopped | AnsweringMachine


class CallAudio(abc.ABC):
    info: CallInfo
    # How long before the audio ahead of a mark has finished playing the carrier reports
    # the mark: 0 for one that echoes it once playback has passed it (Twilio), a frame
    # for one that reports it as that audio's last frame goes on the wire (SIP). The
    # call recording places the agent's audio by marks, so it needs to know.
    mark_lead_ms: float = 0.0
    # Inbound frames the carrier skipped as malformed, by kind (its parser names the
    # kinds); the bridge records them with the call, the app counts them for /metrics.
    malformed_counts: Mapping[str, int] = MappingProxyType({})

    @abc.abstractmethod
    def events(self) -> AsyncIterator[CarrierEvent]: ...

    def deliver_to(self, sink: Callable[[CarrierEvent], None]) -> bool:
        """Hand every later event to ``sink`` as it happens, in order, instead of
        through ``events()``: a frame then reaches the bridge inside the socket's
        callback, with no queue and no task wake-up per frame. Events already waiting
        go to it first; the last is the ``StreamStopped``. ``events()`` must still be
        iterated: it yields nothing more and ends when the stream does. ``sink`` must
        not raise. False (the default): this carrier cannot, ``events()`` yields them."""
        return False

    def hold_delivery(self, hold: bool) -> None:
        """While ``deliver_to``'s sink is behind (its handlers wait), stop taking
        frames from the carrier (``True``) until it has caught up (``False``), so
        they wait on the carrier's side instead of piling up in memory."""

    @abc.abstractmethod
    async def send_audio(self, ulaw: bytes) -> None: ...

    @abc.abstractmethod
    async def send_mark(self, name: str) -> None: ...

    async def send_audio_marked(self, ulaw: bytes, name: str) -> None:
        """``send_audio(ulaw)`` then ``send_mark(name)``: what the bridge does with every
        chunk of the agent's audio, in one call (a carrier may build both at once)."""
        await self.send_audio(ulaw)
        await self.send_mark(name)

    @abc.abstractmethod
    async def clear(self) -> None:
        """Drop everything buffered for playback; pending marks come back at once."""

    @abc.abstractmethod
    async def hang_up(self, say: str | None = None) -> None:
        """End the call; with ``say``, the carrier speaks it first (an apology when
        the model cannot be reached — no model voice is available then)."""

    @abc.abstractmethod
    async def transfer(self, number: str) -> None: ...

    async def send_dtmf(self, digits: str) -> None:
        """Send touch-tones to the far end (IVR navigation): ``0-9*#``, ``w`` for a
        half-second pause. A carrier that cannot raises ``CarrierError``."""
        from agentplatform.errors import CarrierError

        raise CarrierError(f"the {self.info.carrier} carrier cannot send DTMF")

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the stream from our side."""
