"""A ten-minute call, simulated on a virtual clock: the two tracks stay aligned.

The simulated carrier sends the caller's 20 ms frames stamped with their carrier
time, plays the agent's audio from a queue at 8 samples per ms and echoes a mark on
the first 20 ms tick after playback passed it (as the Twilio simulator does); the
network delays every message 30-40 ms, at random, in order. The bridge side is the real
``PlaybackTracker`` and ``CallRecording`` (with the simulated clock). Answers come
faster or slower than real time (the carrier then plays silence between chunks),
and a third are interrupted. Every chunk's position in the recording is compared
with where the carrier actually played it.
"""

from __future__ import annotations

import audioop
import heapq
import itertools
import random
from dataclasses import dataclass, field

from agentplatform.bridge.playback import PlaybackTracker
from agentplatform.carriers.base import InboundAudio
from agentplatform.recording.call import CallRecording
from agentplatform.recording.timeline import Timeline

MS = 8
CALL_MS = 10 * 60 * 1000
CHUNK_MS = 100
T0 = 1000.0  # the simulated monotonic clock at the start of the call (seconds)
JITTER_MS = 10.0  # network delay varies 30-40 ms per message


@dataclass
class _Played:
    start: int  # carrier ms
    end: int
    mark: str
    audio: bytes
    played_ms: int = -1  # -1: played whole


@dataclass
class _Sim:
    seed: int
    rng: random.Random = field(init=False)
    events: list = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)
    now_ms: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def at(self, when: float, kind: str, *payload) -> None:
        heapq.heappush(self.events, (when, next(self.counter), kind, payload))

    def delay(self) -> float:
        return 30 + self.rng.random() * JITTER_MS


def _random_audio(rng: random.Random, ms: int) -> bytes:
    codes = [c for c in range(256) if c not in (0x7F, 0xFF)]
    return bytes(rng.choice(codes) for _ in range(ms * MS))


def _simulate(seed: int, timeline: Timeline):
    sim = _Sim(seed)
    rng = sim.rng
    tracker = PlaybackTracker()

    def dispatch(_rec, note):
        {"caller": timeline.caller, "sent": timeline.agent_sent, "played": timeline.agent_played,
         "cut": timeline.agent_cut, "close": lambda turns: None}[note[0]](*note[1:])

    rec = CallRecording("sim", dispatch, clock=lambda: T0 + sim.now_ms / 1000)
    played: list[_Played] = []
    carrier_free = 0.0
    last_in = last_out = last_back = 0.0
    caller_frames: dict[int, bytes] = {}

    # The caller's line: a frame every 20 ms of carrier time.
    for ts in range(0, CALL_MS, 20):
        audio = bytes([0x10 + (ts // 20) % 64]) * (20 * MS)
        caller_frames[ts] = audio
        last_in = max(last_in, ts + sim.delay())  # sent at its timestamp, as Twilio's sim does
        sim.at(last_in, "frame", ts, audio)
    # Answers: every 6-14 s, 1-6 s long, some slower than real time, a third interrupted.
    start, n = 2000.0, 0
    while start < CALL_MS - 20_000:
        n += 1
        item = f"item{n}"
        chunks = rng.randint(10, 60)
        pace = rng.choice([40, 60, 95, 130])  # ms between chunks from the model
        for k in range(chunks):
            sim.at(start + k * pace, "model", item, _random_audio(rng, CHUNK_MS))
        if rng.random() < 0.33:
            sim.at(start + rng.uniform(300, chunks * CHUNK_MS), "barge", item)
        start += rng.uniform(6000, 14000) + chunks * max(pace, CHUNK_MS)
    cancelled: set[str] = set()

    while sim.events:
        when, _, kind, payload = heapq.heappop(sim.events)
        sim.now_ms = when
        if kind == "frame":  # a caller frame reaches the bridge
            ts, audio = payload
            rec.caller_audio(InboundAudio(audio, ts, received_at=T0 + when / 1000))
        elif kind == "model":  # the model hands the bridge a chunk
            item, audio = payload
            if item in cancelled:
                continue
            mark = tracker.sent(item, CHUNK_MS, now=T0 + when / 1000)
            rec.agent_sent(mark, item, audio)
            last_out = max(last_out, when + sim.delay())
            sim.at(last_out, "arrive", mark, audio)
        elif kind == "arrive":  # the chunk reaches the carrier and queues for playback
            mark, audio = payload
            begin = max(when, carrier_free)
            carrier_free = begin + CHUNK_MS
            played.append(_Played(int(begin), int(carrier_free), mark, audio))
            sim.at(-(-carrier_free // 20) * 20, "echo", mark)  # echoed on the next 20 ms tick
        elif kind == "echo":  # the carrier's playback reaches the mark
            (mark,) = payload
            entry = next(p for p in played if p.mark == mark)
            if entry.played_ms >= 0:
                continue  # cleared before it played out; its echo already went
            last_back = max(last_back, when + sim.delay())
            sim.at(last_back, "echoed", mark)
        elif kind == "echoed":  # the echo reaches the bridge
            (mark,) = payload
            tracker.mark_played(mark, now=T0 + when / 1000)
            rec.agent_played(mark)
        elif kind == "barge":  # the caller talks over the answer: the bridge clears
            (item,) = payload
            cancelled.add(item)
            current = tracker.current
            if current is None or current.item_id != item:
                continue
            heard = tracker.heard_ms(item, now=T0 + when / 1000)
            rec.agent_cut(item, heard)
            tracker.cleared()
            last_out = max(last_out, when + sim.delay())
            sim.at(last_out, "clear")
        elif kind == "clear":  # the carrier drops what it had queued
            for entry in played:
                if entry.end > when and entry.played_ms < 0:
                    entry.played_ms = max(0, int(when) - entry.start)
            carrier_free = min(carrier_free, when)
    rec.close()
    return played, caller_frames


def _right_track(stereo: bytes) -> bytes:
    return audioop.lin2ulaw(audioop.tomono(stereo, 2, 0, 1), 2)


def _left_track(stereo: bytes) -> bytes:
    return audioop.lin2ulaw(audioop.tomono(stereo, 2, 1, 0), 2)


def _placement_errors_ms(seed: int, timeline: Timeline):
    """(item, recorded start − played start in ms) for every chunk that played."""
    played, caller_frames = _simulate(seed, timeline)
    stereo = timeline.take_all()
    right = _right_track(stereo)
    errors = []
    for entry in played:
        if entry.played_ms == 0:
            continue  # dropped by a clear before it played
        probe = entry.audio[:64]
        lo = max(0, (entry.start - 500) * MS)
        found = right.find(probe, lo, (entry.start + 500) * MS + len(probe))
        if entry.played_ms < 0:
            assert found >= 0, f"chunk played at {entry.start} ms is missing from the recording"
        if found >= 0:
            errors.append((entry.mark.split(":")[1], found / MS - entry.start))
    return errors, stereo, caller_frames


def _per_answer(errors: list[tuple[str, float]]) -> list[float]:
    """Each answer's offset: the median of its chunks' (what correlating it would find)."""
    by_item: dict[str, list[float]] = {}
    for item, error in errors:
        by_item.setdefault(item, []).append(error)
    return [sorted(v)[len(v) // 2] for v in by_item.values()]


def test_ten_minutes_of_call_keep_both_tracks_within_20_ms():
    errors, stereo, caller_frames = _placement_errors_ms(7, Timeline())
    assert len(errors) > 1000
    answers = _per_answer(errors)
    # Every answer sits within 20 ms of where it played, the last as well as the first:
    # positions come from the inbound clock, so nothing accumulates.
    assert max(abs(a) for a in answers) <= 20, answers
    first, last = answers[:5], answers[-5:]
    assert abs(sum(last) / 5 - sum(first) / 5) <= 10, (first, last)
    # And so does every single chunk.
    assert max(abs(e) for _, e in errors) <= 20
    # The caller's frames sit exactly on their timestamps, to the last one.
    left = _left_track(stereo)
    for ts in (0, 20, CALL_MS // 2, CALL_MS - 20):
        assert left[ts * MS:(ts + 20) * MS] == caller_frames[ts]


def test_alignment_holds_for_other_random_calls_too():
    for seed in (1, 2, 3):
        errors, _, _ = _placement_errors_ms(seed, Timeline())
        assert max(abs(e) for _, e in errors) <= 20, seed
