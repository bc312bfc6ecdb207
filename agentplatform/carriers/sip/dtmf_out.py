"""RFC 4733 telephone-events we send, as a plan of 20 ms pacer ticks. Pure, no clock.

The pacer in ``media.py`` sends one packet per tick. While a key is pressed, the
tick's packet is a telephone-event instead of audio (the playout buffer waits, so
no speech is lost and none overlaps the tone); between keys and during a pause
(``w``) the ticks are ordinary audio or silence. One key (§2.5):

* ``DIGIT_TICKS`` packets, every one carrying the event's start timestamp, the
  first with the marker bit, the duration growing by 160 samples a packet;
* three end packets (E bit) with the final duration — the end is repeated
  because a lost end packet would leave the key down (§2.5.1.4);
* ``GAP_TICKS`` of audio before the next key, so the far end sees two presses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agentplatform.carriers.dtmf import KEYS, PAUSE, PAUSE_MS
from agentplatform.carriers.sip.rtp import FRAME_MS, FRAME_SAMPLES

DIGIT_TICKS = 5  # 100 ms of tone, the usual key press
END_REPEATS = 3
GAP_TICKS = 3  # 60 ms of audio between keys (after the end packets)
VOLUME = 10  # -10 dBm0 (RFC 4733 §2.3.4: the power level, 0..63 below 0 dBm0)


@dataclass(frozen=True, slots=True)
class EventTick:
    """One tick's telephone-event packet."""

    payload: bytes  # the 4-byte event block
    first: bool  # the first packet of a key: marker bit, and the event timestamp starts here


Tick = EventTick | None  # None: this tick sends audio (or silence) as usual


def event_payload(key: str, *, end: bool, duration: int, volume: int = VOLUME) -> bytes:
    """event, E|R|volume, duration (RFC 4733 §2.3)."""
    return struct.pack("!BBH", KEYS.index(key), (0x80 if end else 0) | (volume & 0x3F), duration)


def plan_ticks(digits: str) -> list[Tick]:
    """The ticks that send ``digits`` (already validated: keys and ``w``)."""
    ticks: list[Tick] = []
    for key in digits:
        if key == PAUSE:
            ticks += [None] * (PAUSE_MS // FRAME_MS)
            continue
        ticks += [EventTick(event_payload(key, end=False, duration=FRAME_SAMPLES * n), n == 1)
                  for n in range(1, DIGIT_TICKS + 1)]
        final = event_payload(key, end=True, duration=FRAME_SAMPLES * DIGIT_TICKS)
        ticks += [EventTick(final, False)] * END_REPEATS
        ticks += [None] * GAP_TICKS
    while ticks and ticks[-1] is None:
        ticks.pop()  # nothing to wait for after the last key
    return ticks
