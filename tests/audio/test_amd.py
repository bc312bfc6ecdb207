"""The answering-machine detector on synthesized greetings: talk-like sound, pauses, beeps."""

from __future__ import annotations

import audioop

import numpy as np

from agentplatform.audio.amd import AmdConfig, MachineDetector

RATE = 8000
RNG = np.random.default_rng(7)


def voiced(ms: int, pitch: float = 140.0) -> np.ndarray:
    """Speech-like sound: a gliding pitch with harmonics under a syllable envelope."""
    t = np.arange(ms * RATE // 1000) / RATE
    f0 = pitch * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    sound = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.abs(np.sin(2 * np.pi * 3.5 * t))
    return 4000 * sound * envelope


def silence(ms: int, noise: float = 30.0) -> np.ndarray:
    return RNG.normal(0, noise, ms * RATE // 1000)


def tone(ms: int, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(ms * RATE // 1000) / RATE
    return 8000 * np.sin(2 * np.pi * hz * t)


def ulaw(*parts: np.ndarray) -> bytes:
    pcm = np.clip(np.concatenate(parts), -32768, 32767).astype("<i2").tobytes()
    return audioop.lin2ulaw(pcm, 2)


def run(audio: bytes, config: AmdConfig | None = None):
    detector = MachineDetector(config)
    decisions = []
    for i in range(0, len(audio) - 159, 160):
        decisions += detector.feed(audio[i:i + 160])
    return decisions


def test_a_short_hello_then_silence_is_a_human():
    decisions = run(ulaw(silence(300), voiced(600), silence(2000)))
    assert [(d.verdict, d.greeting_ended, d.cue) for d in decisions] == [("human", False, "short_greeting")]
    assert decisions[0].at_ms < 300 + 600 + 1000


def test_a_long_unbroken_greeting_is_a_machine_and_the_beep_ends_it():
    greeting = [voiced(900), silence(200), voiced(1200), silence(250), voiced(1000)]
    decisions = run(ulaw(silence(200), *greeting, silence(300), tone(400), silence(1000)))
    assert [(d.verdict, d.greeting_ended, d.cue) for d in decisions] == [
        ("machine", False, "long_greeting"), ("machine", True, "beep")]
    beep_end_ms = 200 + 900 + 200 + 1200 + 250 + 1000 + 300 + 400
    assert beep_end_ms <= decisions[1].at_ms <= beep_end_ms + 40


def test_a_machine_greeting_without_a_beep_ends_on_silence():
    decisions = run(ulaw(voiced(3000), silence(2500)))
    assert [(d.verdict, d.greeting_ended, d.cue) for d in decisions] == [
        ("machine", False, "long_greeting"), ("machine", True, "silence")]


def test_a_beep_alone_is_a_machine_whose_greeting_ends_with_the_beep():
    decisions = run(ulaw(silence(500), tone(300, 850), silence(500)))
    assert [(d.verdict, d.greeting_ended, d.cue) for d in decisions] == [
        ("machine", False, "beep"), ("machine", True, "beep")]


def test_a_short_greeting_followed_by_a_beep_is_a_machine_after_all():
    decisions = run(ulaw(silence(200), voiced(700), silence(900), tone(400, 1400), silence(1000)))
    assert [(d.verdict, d.greeting_ended, d.cue) for d in decisions] == [
        ("human", False, "short_greeting"), ("machine", False, "beep"), ("machine", True, "beep")]


def test_speech_is_not_taken_for_a_beep():
    decisions = run(ulaw(voiced(1200, pitch=220), silence(1500)))
    assert [d.cue for d in decisions] == ["short_greeting"]


def test_nobody_speaking_is_unknown():
    decisions = run(ulaw(silence(5000)))
    assert [(d.verdict, d.cue) for d in decisions] == [("unknown", "initial_silence")]


def test_a_hello_over_steady_line_noise_is_a_human():
    hiss = lambda ms: RNG.normal(0, 200, ms * RATE // 1000)  # noqa: E731 - about -44 dBFS
    decisions = run(ulaw(hiss(1500), hiss(600) + voiced(600), hiss(2000)))
    assert [(d.verdict, d.cue) for d in decisions] == [("human", "short_greeting")]


def test_the_detector_stops_working_once_finished():
    detector = MachineDetector()
    audio = ulaw(voiced(500), silence(3000), voiced(3000), tone(400), silence(500))
    decisions = [d for i in range(0, len(audio) - 159, 160) for d in detector.feed(audio[i:i + 160])]
    assert detector.finished and [d.verdict for d in decisions] == ["human"]
