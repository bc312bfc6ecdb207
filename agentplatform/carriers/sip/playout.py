"""What we will say to the caller, and where the marks sit in it: pure, no clock.

The pacer in ``media.py`` takes one 20 ms frame per tick; a mark is a position in
the byte stream, reported played the tick the pacer sends past it. So "played"
is exactly what went out on the wire — the far end's own jitter buffer (20-60
ms) is the only part we cannot see — and ``clear`` takes effect at the next tick.
"""

from __future__ import annotations

from collections import deque

from agentplatform.carriers.sip.rtp import FRAME_BYTES, ULAW_SILENCE


class PlayoutBuffer:
    """A bounded μ-law byte queue with marks at byte positions.

    Models deliver audio faster than real time, so the queue holds up to
    ``limit_bytes`` (a whole long answer); audio beyond it is dropped and counted
    rather than let one call grow without bound.
    """

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < FRAME_BYTES:
            raise ValueError(f"playout limit {limit_bytes} is below one frame ({FRAME_BYTES} bytes)")
        self.limit_bytes = limit_bytes
        self._audio = bytearray()
        self._head = 0  # stream position of _audio[0]
        self._marks: deque[tuple[int, str]] = deque()  # (stream position, name)
        self.sent_bytes = 0  # audio bytes taken for sending (padding not counted)
        self.dropped_bytes = 0  # refused over the limit
        self.cleared_bytes = 0  # dropped by clear

    @property
    def queued_bytes(self) -> int:
        return len(self._audio)

    def play(self, ulaw: bytes) -> None:
        room = self.limit_bytes - len(self._audio)
        if len(ulaw) > room:
            self.dropped_bytes += len(ulaw) - max(room, 0)
            ulaw = ulaw[: max(room, 0)]
        self._audio += ulaw

    def mark(self, name: str) -> list[str]:
        """Place a mark after the queued audio; returns it at once (played) if
        nothing is queued ahead of it."""
        if not self._audio:
            return [name]
        self._marks.append((self._head + len(self._audio), name))
        return []

    def take_frame(self) -> tuple[bytes | None, list[str]]:
        """The next 160 bytes (a short tail padded with silence) and the marks it
        completes; ``None`` when nothing is queued (the caller sends silence)."""
        if not self._audio:
            return None, []
        frame = bytes(self._audio[:FRAME_BYTES])
        del self._audio[:FRAME_BYTES]
        self._head += len(frame)
        self.sent_bytes += len(frame)
        if len(frame) < FRAME_BYTES:
            frame += bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(frame))
        played = []
        while self._marks and self._marks[0][0] <= self._head:
            played.append(self._marks.popleft()[1])
        return frame, played

    def clear(self) -> list[str]:
        """Drop every queued byte at once; returns the marks that were pending."""
        self.cleared_bytes += len(self._audio)
        self._head += len(self._audio)
        self._audio.clear()
        pending = [name for _, name in self._marks]
        self._marks.clear()
        return pending
