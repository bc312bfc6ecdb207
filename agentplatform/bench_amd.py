"""How well the local answering-machine detector (``audio/amd.py``) tells people from
machines, and how fast: measured on recordings made here with the local TTS.

The set: people answering (22 phrasings such as "Hello?", "Hi, this is Mark.",
"Hello? … Hello?", two of them a receptionist's long greeting), each twice, and
machines greeting (22 voicemail greetings, two of them as short as a person's
"Leave a message."), each once with a beep of 400-1400 Hz and once without. Every recording is the Piper voice
rendered with its natural sampling noise and played back at 0.9×, 1.0× or 1.1×
speed (pitch and tempo together, like three different speakers), placed after
0.3-0.8 s of answer silence and followed by the silence of someone waiting, cut to
8 kHz μ-law as the trunk delivers it; every third has line noise (about -47 dBFS)
under it. The detector runs with its shipped defaults. The set is small and made
from one voice: the figures say where the detector's rules fail (long personal
greetings, short machine greetings without a beep), not how a trunk's callers mix.

Reported: accuracy and the confusion table (truth × final verdict), time from
answer to the first verdict (p50/p90), how many first verdicts a later beep
overturned, for machines the end-of-greeting cue and how far after the beep's end
(or the greeting's end) it came, and the detector's CPU per frame.

    python -m agentplatform.bench_amd          # or as part of `make bench`
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from agentplatform.audio.amd import MachineDetector

RATE = 8000
HUMAN = [
    "Hello?", "Hi.", "Yes?", "Hello, who's this?", "Hi, this is Mark.", "Speaking.",
    "Hello, Lisa speaking.", "Yeah, hello?", "Good morning.", "Hey.", "Hello, how can I help?",
    "Yes, hello.", "Hi there.", "Who is calling?", "Hello, Smith residence.", "This is Dan.",
    "Good afternoon?", "Hello, yes?", "Hello? ... Hello?", "Hi, it's Karen.",
    # Hard on purpose: a receptionist's long greeting sounds like a machine's.
    "Good afternoon, thank you for calling Acme Dental, this is Julie speaking, how may I help you?",
    "Hello, this is Robert Miller from accounting, what can I do for you?",
]
MACHINE = [
    "Hi, you've reached Sarah. I can't come to the phone right now, please leave a message after the tone.",
    "The person you are calling is not available. Please leave your message after the beep.",
    "Hello, this is John. Sorry I missed your call. Leave your name and number and I'll get back to you.",
    "You have reached the voicemail of Doctor Patel. Please leave a detailed message.",
    "Thanks for calling Acme Plumbing. Our office is closed. "
    "Please leave a message and we will call you back.",
    "Hey, it's Mike. I'm not around right now, so leave a message.",
    "The number you have dialed is not available. At the tone, please record your message.",
    "Hi, this is Emma and Tom. We're out at the moment. Leave us a message and we'll call you back soon.",
    "You've reached the Johnson family. We can't take your call right now. Please leave a message.",
    "Hello. You have reached five five five, zero one nine nine. Please leave a message after the tone.",
    "This is Alex. I'm in a meeting. Please leave your name, number, and a short message.",
    "Welcome to the voice mailbox of Maria Garcia. Please leave a message after the tone.",
    "Hi, you've reached the front desk. We are busy helping other customers. Please leave a message.",
    "Sorry, I can't answer the phone right now. Leave a message and I'll return your call as soon as I can.",
    "Your call has been forwarded to an automatic voice message system. The person is not available.",
    "Hello, you've reached Chris. Please leave a message, and have a great day.",
    "This mailbox belongs to Kevin Brown. Please leave a message after the beep. Thank you.",
    "Hi, it's Rachel. I'm probably driving. Leave a message and I'll call you back later.",
    "Thank you for calling. Nobody is available to take your call. Please leave a message.",
    "Good day, you have reached the law office of Green and Partners. Please leave your message.",
    # Hard on purpose: greetings as short as a person's (only a beep can tell).
    "Leave a message.",
    "Not available.",
]
SPEEDS = (0.9, 1.0, 1.1)
BEEP_HZ = (400, 850, 1000, 1400)


@dataclass(slots=True)
class Recording:
    name: str
    truth: str  # human | machine
    kind: str  # human | beep | no beep
    ulaw: bytes
    talk_end_ms: int  # where the greeting's speech ends
    beep_end_ms: int | None  # where the beep ends (machines with a beep)
    noisy: bool


@dataclass(slots=True)
class Outcome:
    name: str
    truth: str
    kind: str
    verdict: str
    cue: str
    verdict_ms: int
    changed: bool  # the first verdict was overturned (by a beep after "human")
    greeting_end_cue: str
    greeting_end_ms: int | None
    expected_end_ms: int | None
    noisy: bool


def _speech(text: str, speed: float) -> np.ndarray:
    from agentplatform.audio.wav import resample_whole
    from agentplatform.speech.tts_local import synthesize_sentences, voice_rate

    parts: list[np.ndarray] = []
    for piece in text.split("..."):  # "Hello? ... Hello?": a person repeating after a pause
        pcm = b"".join(synthesize_sentences(piece.strip()))  # natural sampling noise: every take differs
        # Played back at ``speed``: as if recorded at voice_rate * speed.
        resampled = resample_whole(pcm, int(voice_rate() * speed), RATE)
        parts.append(np.frombuffer(resampled, dtype="<i2").astype(np.float64))
        parts.append(np.zeros(int(1.2 * RATE)))
    return np.concatenate(parts[:-1])


def _ms(samples: int) -> int:
    return samples * 1000 // RATE


def build_set(seed: int = 12) -> list[Recording]:
    """The recordings (rendered with the local voice; about a minute of CPU)."""
    from agentplatform.audio.codecs import pcm16_to_ulaw

    rng = random.Random(seed)
    noise_rng = np.random.default_rng(seed)
    jobs: list[tuple[str, str, bool | None]] = [("human", text, None) for text in HUMAN for _ in range(2)]
    jobs += [("machine", text, beep) for text in MACHINE for beep in (True, False)]
    out: list[Recording] = []
    for index, (truth, text, beep) in enumerate(jobs):
        speed = SPEEDS[index % len(SPEEDS)]
        lead = np.zeros(int(rng.uniform(0.3, 0.8) * RATE))
        talk = _speech(text, speed)
        pieces = [lead, talk]
        talk_end = len(lead) + len(talk)
        beep_end = None
        if beep:
            gap = np.zeros(int(rng.uniform(0.3, 0.7) * RATE))
            hz, seconds = rng.choice(BEEP_HZ), rng.uniform(0.3, 0.6)
            t = np.arange(int(seconds * RATE)) / RATE
            pieces += [gap, 9000 * np.sin(2 * np.pi * hz * t)]
            beep_end = talk_end + len(gap) + len(t)
        pieces.append(np.zeros(int(4.0 * RATE)))  # the person waits; the machine records
        signal = np.concatenate(pieces)
        noisy = index % 3 == 0
        if noisy:
            signal = signal + noise_rng.normal(0, 150, len(signal))
        pcm = np.clip(signal, -32768, 32767).astype("<i2").tobytes()
        kind = "beep" if beep else ("no beep" if truth == "machine" else "human")
        label = f"{truth} {text[:28]!r} x{speed}{' beep' if beep else ''}{' noisy' if noisy else ''}"
        out.append(Recording(label, truth, kind, pcm16_to_ulaw(pcm), _ms(talk_end),
                             None if beep_end is None else _ms(beep_end), noisy))
    return out


def detect(recording: Recording) -> tuple[Outcome, float]:
    """Run the detector over one recording frame by frame; the outcome and the
    seconds of CPU spent in ``feed``."""
    detector = MachineDetector()
    first = None  # the first verdict: when the agent may speak (or stay silent)
    final = None  # the last verdict: a beep after a short greeting turns "human" into "machine"
    ended = None
    decided: list = []
    spent = 0.0
    audio = recording.ulaw
    for at in range(0, len(audio) - 159, 160):
        started = time.perf_counter()
        decisions = detector.feed(audio[at:at + 160])
        spent += time.perf_counter() - started
        for decision in decisions:
            if first is None:
                first = decision
            final = decision
            decided.append(decision)
            if decision.greeting_ended:
                ended = decision
        if detector.finished:
            break
    expected = (recording.beep_end_ms if recording.beep_end_ms is not None
                else recording.talk_end_ms if recording.truth == "machine" else None)
    return Outcome(
        name=recording.name, truth=recording.truth, kind=recording.kind,
        verdict=final.verdict if final else "none",
        cue=next((d.cue for d in decided if final and d.verdict == final.verdict), ""),
        verdict_ms=first.at_ms if first else -1,
        changed=first is not None and final is not None and first.verdict != final.verdict,
        greeting_end_cue=ended.cue if ended else "", greeting_end_ms=ended.at_ms if ended else None,
        expected_end_ms=expected, noisy=recording.noisy,
    ), spent


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest rank
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_amd(seed: int = 12) -> dict[str, object]:
    recordings = build_set(seed)
    outcomes, cpu, frames = [], 0.0, 0
    for recording in recordings:
        outcome, spent = detect(recording)
        outcomes.append(outcome)
        cpu += spent
        frames += max(1, (outcome.greeting_end_ms or outcome.verdict_ms or 0) // 20)
    confusion: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = confusion.setdefault(o.truth, {"human": 0, "machine": 0, "unknown": 0, "none": 0})
        row[o.verdict] += 1
    correct = sum(o.verdict == o.truth for o in outcomes)
    timing = {truth: {"p50": _pct([o.verdict_ms for o in outcomes if o.truth == truth], 0.5),
                      "p90": _pct([o.verdict_ms for o in outcomes if o.truth == truth], 0.9)}
              for truth in ("human", "machine")}
    machines = [o for o in outcomes if o.truth == "machine" and o.verdict == "machine"]
    lateness = {kind: [float(o.greeting_end_ms - o.expected_end_ms) for o in machines
                       if o.kind == kind and o.greeting_end_ms is not None and o.expected_end_ms is not None]
                for kind in ("beep", "no beep")}
    ended_cues: dict[str, int] = {}
    for o in machines:
        ended_cues[o.greeting_end_cue or "none"] = ended_cues.get(o.greeting_end_cue or "none", 0) + 1
    noisy = [o for o in outcomes if o.noisy]
    return {
        "recordings": len(outcomes),
        "accuracy": round(correct / len(outcomes), 3),
        "accuracy_noisy": round(sum(o.verdict == o.truth for o in noisy) / max(1, len(noisy)), 3),
        "confusion": confusion,
        "verdict_ms": timing,
        "greeting_end_cues": ended_cues,
        "overturned": sum(o.changed for o in outcomes),
        "greeting_end_after_expected_ms": {
            kind: {"p50": _pct(v, 0.5), "p90": _pct(v, 0.9), "n": len(v)} for kind, v in lateness.items()},
        "cpu_us_per_frame": round(cpu / max(1, frames) * 1e6, 1),
        "misses": [asdict(o) for o in outcomes if o.verdict != o.truth],
    }


def table(result: dict[str, object]) -> str:
    confusion = result["confusion"]
    assert isinstance(confusion, dict)
    lines = [f"answering-machine detection: {result['recordings']} recordings, accuracy "
             f"{result['accuracy']:.1%} (with line noise {result['accuracy_noisy']:.1%})",
             f"{'truth':>8} | {'human':>6} {'machine':>8} {'unknown':>8}"]
    for truth in ("human", "machine"):
        row = confusion.get(truth, {})
        lines.append(f"{truth:>8} | {row.get('human', 0):>6} {row.get('machine', 0):>8} "
                     f"{row.get('unknown', 0) + row.get('none', 0):>8}")
    timing = result["verdict_ms"]
    assert isinstance(timing, dict)
    lines.append(f"first verdicts overturned by a later beep: {result['overturned']}")
    lines.append("time to the first verdict from answer (ms): " + ", ".join(
        f"{truth} p50 {t['p50']:.0f} / p90 {t['p90']:.0f}" for truth, t in timing.items()))
    late = result["greeting_end_after_expected_ms"]
    assert isinstance(late, dict)
    lines.append("greeting end reported after the beep's end / the talk's end (ms): " + ", ".join(
        f"{kind} p50 {v['p50']:.0f} / p90 {v['p90']:.0f} (n={v['n']})" for kind, v in late.items()))
    lines.append(f"end-of-greeting cues: {result['greeting_end_cues']}; "
                 f"detector CPU {result['cpu_us_per_frame']} µs per 20 ms frame")
    return "\n".join(lines)


def main() -> int:
    result = run_amd()
    print(table(result))
    misses = result["misses"]
    assert isinstance(misses, list)
    for miss in misses:
        print(f"  miss: {miss['name']}: {miss['verdict']} ({miss['cue']} at {miss['verdict_ms']} ms)")
    if "--json" in sys.argv:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
