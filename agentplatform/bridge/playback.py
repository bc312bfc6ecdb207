"""How much of the agent's answer the caller has actually heard.

The carrier plays our audio from its own buffer and echoes a mark when playback
reaches it. Every chunk we send is followed by a mark named
``"<generation>:<item>:<end_ms>"``: the playback generation (bumped by every
``clear``, so marks the carrier returns for dropped audio are recognised as stale),
the model's item, and how many ms of that item have been sent once the chunk plays.

Between echoes, playback runs at real time, so the position is estimated from the
newest echo plus the time since — and never beyond what was sent.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class ItemPlayback:
    item_id: str
    sent_ms: float = 0.0
    played_ms: float = 0.0  # end of the newest echoed mark
    anchor_ms: float = 0.0  # position at anchor_time
    anchor_time: float = 0.0  # monotonic time playback was at anchor_ms
    done: bool = False  # the model finished sending this item


@dataclass(slots=True)
class PlaybackTracker:
    generation: int = 0
    items: dict[str, ItemPlayback] = field(default_factory=dict)
    current: ItemPlayback | None = None
    stale_marks: int = 0
    _last_send_end: float = 0.0  # monotonic time our queued audio finishes playing

    def sent(self, item_id: str, duration_ms: float, now: float | None = None) -> str:
        """Record ``duration_ms`` more audio of ``item_id`` sent; returns the mark name."""
        now = time.monotonic() if now is None else now
        item = self.items.get(item_id)
        if item is None:
            item = ItemPlayback(item_id)
            if len(self.items) >= 4:  # older answers have long finished playing
                del self.items[next(iter(self.items))]
            self.items[item_id] = item
            # Playback of a new item starts when what is queued ahead of it ends.
            item.anchor_time = max(now, self._last_send_end)
            self.current = item
        item.sent_ms += duration_ms
        self._last_send_end = max(now, self._last_send_end) + duration_ms / 1000.0
        return f"{self.generation}:{item_id}:{item.sent_ms:.0f}"

    def queued_ahead(self, duration_ms: float, now: float | None = None) -> None:
        """Audio that is no model item (the recording announcement) went to the carrier:
        the next item plays after it."""
        now = time.monotonic() if now is None else now
        self._last_send_end = max(now, self._last_send_end) + duration_ms / 1000.0

    def mark_played(self, name: str, now: float | None = None) -> ItemPlayback | None:
        """Apply an echoed mark; stale or foreign marks are counted and ignored."""
        now = time.monotonic() if now is None else now
        try:
            generation_text, item_id, end_text = name.rsplit(":", 2)
            generation, end_ms = int(generation_text), float(end_text)
        except ValueError:
            self.stale_marks += 1
            return None
        item = self.items.get(item_id)
        if generation != self.generation or item is None or not 0.0 <= end_ms < math.inf:
            self.stale_marks += 1  # the carrier echoes what we named; anything else is foreign
            return None
        end_ms = min(end_ms, item.sent_ms)  # a mark never makes more heard than was sent
        if end_ms > item.played_ms:
            item.played_ms = end_ms
            item.anchor_ms = end_ms
            item.anchor_time = now
        return item

    def heard_ms(self, item_id: str, now: float | None = None) -> int:
        """Best estimate of how much of ``item_id`` the caller heard: never more than sent."""
        now = time.monotonic() if now is None else now
        item = self.items.get(item_id)
        if item is None:
            return 0
        estimate = item.anchor_ms + max(0.0, now - item.anchor_time) * 1000.0
        # Floor (with a hair of tolerance for float error): never claim more than was sent.
        return int(max(item.played_ms, min(estimate, item.sent_ms)) + 1e-6)

    def playing(self, now: float | None = None) -> bool:
        """True while audio we sent is still queued at the carrier."""
        now = time.monotonic() if now is None else now
        item = self.current
        if item is None:
            return False
        return item.played_ms < item.sent_ms and now < self._last_send_end + 0.5

    def all_played(self) -> bool:
        item = self.current
        return item is None or item.played_ms >= item.sent_ms - 0.5

    def cleared(self) -> None:
        """The carrier dropped its buffer: bump the generation, forget the queue."""
        self.generation += 1
        self.current = None
        self.items.clear()
        self._last_send_end = 0.0
