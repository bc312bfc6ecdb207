"""One call's two tracks on one sample clock: where every byte of audio goes.

A position is a sample number at 8 kHz from the start of the carrier's stream, and
one μ-law byte is one sample, so positions are plain byte counts. The caller's
frames are placed where the carrier's inbound frame clock says they were captured.
The agent's audio is placed when it *played*: a chunk waits here until the carrier
echoes the mark sent after it, and then ends at ``now`` — the inbound clock at the
moment the echo came in. A mark comes back once the audio ahead of it has played,
and the inbound frames carry the carrier's capture clock, so an echo and a frame
that arrive together describe the same moment at the carrier: the network delay
is paid on both and cancels out.

Chunks that play back to back are placed back to back (the carrier plays one sample
per sample, on the same clock it captures on), so jitter in when echoes arrive
does not chop the agent's speech; only when an echo says playback has fallen more
than ``slack`` behind (the model fell behind real time and the carrier played
silence) is a chunk moved later. Every placement is tied to the inbound clock, so
errors never add up: after ten minutes an answer sits as close to where it played
as after ten seconds.

A barge-in cuts the agent's track where the bridge says playback stopped (the
same ``heard`` it tells the model); audio never played is dropped. Pure: no
clock, no files, no threads — the writer thread owns one per call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from agentplatform.audio.codecs import ulaw_to_pcm16

SAMPLES_PER_MS = 8
ULAW_SILENCE = 0xFF  # μ-law for 0
DEFAULT_SLACK = 20 * SAMPLES_PER_MS  # echo jitter tolerated before a gap is assumed
# Past this much unwritten audio, the oldest is written even if agent audio sent
# before it was never echoed (a carrier that lost its marks): memory stays bounded.
DEFAULT_MAX_HOLD = 120_000 * SAMPLES_PER_MS


@dataclass(slots=True)
class _Chunk:
    mark: str
    item_id: str
    audio: bytes
    item_offset: int  # samples of this item sent before this chunk
    sent_at: int  # inbound position when it was sent (nothing plays before it was sent)


class Timeline:
    """Caller and agent audio placed on the inbound sample clock, mixed for writing."""

    def __init__(self, *, slack: int = DEFAULT_SLACK, max_hold: int = DEFAULT_MAX_HOLD) -> None:
        self.slack = slack
        self.max_hold = max_hold
        self.written = 0  # samples before this position have been taken for the file
        self.caller_end = 0  # just after the newest caller sample
        self.agent_end = 0  # just after the newest placed agent sample
        self.clipped = 0  # agent samples that arrived for an already-written stretch
        self._late_before = False  # the previous echo came much later than expected
        # Least seen time from sending audio to its playing (samples), from echoes.
        self.play_delay: int | None = None
        self._left = bytearray()  # caller, from ``written`` on
        self._right = bytearray()  # agent, from ``written`` on
        self._pending: deque[_Chunk] = deque()
        self._pending_samples = 0
        self._item_sent: dict[str, int] = {}
        # Where each agent item was first placed, for the transcript's offsets.
        self.item_starts: dict[str, int] = {}

    # ------------------------------------------------------------------ caller

    def caller(self, position: int, ulaw: bytes) -> None:
        """A caller frame at ``position``; a repeat of audio already placed is dropped."""
        if position < self.caller_end:
            ulaw = ulaw[self.caller_end - position:]
            position = self.caller_end
        if not ulaw:
            return
        self._put(self._left, position, ulaw)
        self.caller_end = position + len(ulaw)

    # ------------------------------------------------------------------ agent

    def agent_sent(self, mark: str, item_id: str, ulaw: bytes, sent_at: int) -> None:
        """Audio handed to the carrier, followed by ``mark``; placed when it plays."""
        offset = self._item_sent.get(item_id, 0)
        if len(self._item_sent) >= 8 and item_id not in self._item_sent:
            del self._item_sent[next(iter(self._item_sent))]
        self._item_sent[item_id] = offset + len(ulaw)
        self._pending.append(_Chunk(mark, item_id, ulaw, offset, sent_at))
        self._pending_samples += len(ulaw)

    def agent_played(self, mark: str, now: int) -> None:
        """The carrier echoed ``mark`` at inbound position ``now``: the chunk before it,
        and any still waiting ahead of it, have played. Unknown marks (dropped by a
        cut, or not ours) are ignored."""
        if not any(chunk.mark == mark for chunk in self._pending):
            return
        run: list[_Chunk] = []
        while self._pending:
            chunk = self._pending.popleft()
            self._pending_samples -= len(chunk.audio)
            run.append(chunk)
            if chunk.mark == mark:
                break
        self._place_run(run, ended=now)

    def agent_cut(self, item_id: str, heard: int, now: int) -> None:
        """Playback stopped at ``now`` with ``heard`` samples of ``item_id`` played:
        place what of the waiting audio was heard, drop the rest."""
        run: list[_Chunk] = []
        for chunk in self._pending:
            if chunk.item_id != item_id:  # queued ahead of the item: it played
                run.append(chunk)
                continue
            keep = max(0, min(len(chunk.audio), heard - chunk.item_offset))
            if keep:
                run.append(_Chunk(chunk.mark, chunk.item_id, chunk.audio[:keep],
                                  chunk.item_offset, chunk.sent_at))
        self._pending.clear()
        self._pending_samples = 0
        if run:
            self._place_run(run, ended=None)

    def _place_run(self, run: list[_Chunk], *, ended: int | None) -> None:
        """Place chunks that have played: each right after the one before, or — when it
        was sent after the line had run dry — when it could first play (its send plus
        the learnt send-to-play delay). An echo (``ended``: where the last chunk finished)
        overrides that guess when it is much later (more than twice ``slack``: echoes
        run late by up to a frame tick) or earlier by more than ``slack``, and teaches
        the send-to-play delay."""
        starts: list[int] = []
        position = self.agent_end
        for chunk in run:
            start = position
            # Sent after the line ran dry (by more than echo jitter): it played late.
            if self.play_delay is not None and chunk.sent_at + self.play_delay - start > self.slack:
                start = chunk.sent_at + self.play_delay
            starts.append(start)
            position = start + len(chunk.audio)
        if ended is not None:
            last = run[-1]
            before = starts[-2] + len(run[-2].audio) if len(run) > 1 else self.agent_end
            observed = ended - len(last.audio)
            # An echo arrives late by up to a tick plus network jitter, never early, so
            # only a much later one means the line stalled where sending could not tell —
            # and only if the next echo says so too: one late echo is as likely our own
            # process having been busy (the echoes behind it then come in a burst).
            excess = observed - starts[-1]
            late = excess > 2 * self.slack
            confirmed = late and (self._late_before or self.play_delay is None)
            self._late_before = late and not confirmed
            if confirmed or -excess > self.slack:
                moved = max(before, observed) - starts[-1]
                # Later: the chunks played back to back before it (their echoes lost)
                # move with it; earlier: only it, never over the one before.
                i = len(run) - 1
                starts[i] += moved
                while moved > 0 and i > 0 and _end(run, starts, i - 1) == starts[i] - moved:
                    i -= 1
                    starts[i] += moved
            # Nothing plays before it is sent, and echoes run late, not early: the least
            # (echoed start − send) seen is the line's own delay from send to ear.
            delay = observed - last.sent_at
            self.play_delay = delay if self.play_delay is None else min(self.play_delay, delay)
        for chunk, start in zip(run, starts, strict=True):
            self.item_starts.setdefault(chunk.item_id, start)
            audio = chunk.audio
            if start < self.written:  # only after max_hold forced the stretch out
                self.clipped += min(len(audio), self.written - start)
                audio = audio[self.written - start:]
                start = self.written
            if audio:
                self._put(self._right, start, audio)
                self.agent_end = max(self.agent_end, start + len(audio))

    # ------------------------------------------------------------------ output

    def ready_until(self) -> int:
        """How far both tracks are final: the caller's audio is, up to its newest frame;
        the agent's is, up to where still-waiting audio could at the earliest land."""
        if not self._pending:
            return self.caller_end
        first = self._pending[0]
        earliest = max(self.agent_end, first.sent_at - self._pending_samples)
        return max(min(self.caller_end, earliest), self.caller_end - self.max_hold)

    def take(self, until: int | None = None) -> bytes:
        """Stereo PCM16 (left caller, right agent) from ``written`` to ``until`` (default:
        what is final), silence where nobody spoke; that stretch is then forgotten."""
        end = self.ready_until() if until is None else until
        count = end - self.written
        if count <= 0:
            return b""
        left, right = _head(self._left, count), _head(self._right, count)
        self.written = end
        return interleave(ulaw_to_pcm16(left), ulaw_to_pcm16(right))

    def take_all(self) -> bytes:
        """Everything placed, to the end of whichever track is longer (the call ended:
        audio still waiting for an echo was never heard to play, so it is dropped)."""
        self._pending.clear()
        self._pending_samples = 0
        return self.take(max(self.caller_end, self.agent_end, self.written))

    def _put(self, track: bytearray, position: int, audio: bytes) -> None:
        index = position - self.written
        if index < 0:
            audio, index = audio[-index:], 0
        if len(track) < index:
            track.extend(bytes([ULAW_SILENCE]) * (index - len(track)))
        track[index:index + len(audio)] = audio


def _end(run: list[_Chunk], starts: list[int], i: int) -> int:
    return starts[i] + len(run[i].audio)


def _head(track: bytearray, count: int) -> bytes:
    """The first ``count`` samples of ``track`` (silence-padded), removed from it."""
    head = bytes(track[:count])
    del track[:count]
    if len(head) < count:
        head += bytes([ULAW_SILENCE]) * (count - len(head))
    return head


def interleave(left: bytes, right: bytes) -> bytes:
    """Two equal-length PCM16 mono signals as one stereo PCM16 signal."""
    import audioop

    return audioop.add(audioop.tostereo(left, 2, 1, 0), audioop.tostereo(right, 2, 0, 1), 2)
