"""The bridge's side of one call's recording: O(1) notes on a queue, nothing else.

Every method is called from the audio path, so each only reads the inbound clock,
builds a tuple and puts it on the writer's queue (no disk, no lock held, no work
that grows with the call). Placing audio on the timeline and writing the file
happen on the writer thread (``writer.py``).

The clock is the carrier's inbound frame clock (``InboundAudio.timestamp_ms``):
"now" is the clock time less the offset between the two that the least delayed
recent frames show (a minimum that may only rise slowly, 1 ms per second). The
wall clock thus only carries the inbound clock between frames; the offset is
re-measured on every frame, so the two tracks cannot drift apart.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentplatform.recording.timeline import SAMPLES_PER_MS

if TYPE_CHECKING:
    from agentplatform.bridge.playback import PlaybackTracker
    from agentplatform.carriers.base import InboundAudio

FRAME_SAMPLES = 20 * SAMPLES_PER_MS
# A caller clock that jumps back further than this started a new timeline (a SIP
# caller's new RTP stream); its frames continue where the recording is.
REBASE_SAMPLES = 2000 * SAMPLES_PER_MS
# How fast the delay estimate may rise (seconds per second): 1 ms/s.
LAG_RELAX = 0.001


class CallRecording:
    """What the bridge tells the recording of one call."""

    def __init__(self, call_id: str, put: Callable[[CallRecording, tuple[Any, ...]], None], *,
                 clock: Callable[[], float] = time.monotonic, mark_lead_ms: float = 0.0) -> None:
        self.call_id = call_id
        # A carrier that reports marks before the audio has played out (CallAudio).
        self._mark_lead = int(mark_lead_ms * SAMPLES_PER_MS)
        self._put = put
        self._clock = clock
        self._caller_end = 0  # samples, just after the newest caller frame
        self._caller_at = 0.0  # clock time it arrived
        # Clock time minus the inbound clock (seconds), over the least delayed recent frame.
        self._lag: float | None = None
        self._rebase = 0
        self._speech_starts: deque[int] = deque()
        self._turns: list[tuple[str, str, int]] = []  # (role, item_id, position)
        self._closed = False

    def now(self, at: float | None = None) -> int:
        """The inbound clock now, in samples: the clock time less the frames' smallest
        recent delay (a frame delayed on the way would otherwise make "now" jump back)."""
        if self._lag is None:
            return self._caller_end
        at = self._clock() if at is None else at
        return round((at - self._lag) * 8000)

    # ------------------------------------------------------------------ audio

    def caller_audio(self, frame: InboundAudio) -> None:
        position = frame.timestamp_ms * SAMPLES_PER_MS + self._rebase
        if position < self._caller_end - REBASE_SAMPLES:
            self._rebase += self._caller_end - position
            position = self._caller_end
        end = position + len(frame.audio)
        if end <= self._caller_end:
            return  # a repeat: already on the timeline
        arrived = frame.received_at if frame.received_at else self._clock()
        # The timestamp is the frame's first sample (its presentation time): that is the
        # position an arrival stands for; the least delayed frames show the true offset.
        lag = arrived - position / 8000
        if self._lag is None:
            self._lag = lag
        else:  # the minimum, let rise slowly: follows a clock that drifts or a route change
            self._lag = min(lag, self._lag + (arrived - self._caller_at) * LAG_RELAX)
        self._caller_end = end
        self._caller_at = arrived
        self._put(self, ("caller", position, frame.audio))

    def agent_sent(self, mark: str, item_id: str, ulaw: bytes) -> None:
        """``ulaw`` went to the carrier, followed by ``mark``."""
        self._put(self, ("sent", mark, item_id, ulaw, self.now()))

    def agent_played(self, mark: str) -> None:
        """The carrier echoed ``mark``: the audio before it has played."""
        self._put(self, ("played", mark, self.now() + self._mark_lead))

    def agent_cut(self, item_id: str, heard_ms: float) -> None:
        """Playback was stopped with ``heard_ms`` of ``item_id`` heard (a barge-in)."""
        self._put(self, ("cut", item_id, int(heard_ms * SAMPLES_PER_MS), self.now()))

    # ------------------------------------------------------------------ transcript offsets

    def speech_started(self) -> None:
        self._speech_starts.append(self.now())

    def turn(self, role: str, item_id: str = "") -> None:
        """A transcript line was recorded: note where it starts on the recording (the
        caller's: where their speech began; the agent's: where the item was placed)."""
        if role == "user":
            position = self._speech_starts.popleft() if self._speech_starts else self.now()
            self._speech_starts.clear()
        else:
            position = self.now()
        self._turns.append((role, item_id, position))

    # ------------------------------------------------------------------ end

    def finish(self, playback: PlaybackTracker) -> None:
        """The call is over: keep what of the current answer was heard, then close.
        Idempotent."""
        if self._closed:
            return
        item = playback.current
        if item is not None and not playback.all_played():
            self.agent_cut(item.item_id, playback.heard_ms(item.item_id))
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._put(self, ("close", list(self._turns)))

    def discard(self) -> None:
        """Record nothing of this call (its announcement could not be played)."""
        if self._closed:
            return
        self._closed = True
        self._put(self, ("discard",))
