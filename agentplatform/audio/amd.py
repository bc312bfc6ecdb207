"""A local answering-machine detector for calls we place: pure, per 20 ms frame.

A carrier without its own detection (the SIP trunk) feeds it the callee's first
seconds of μ-law. It listens for the shape of the greeting, not its words:

* a person answers with a short greeting ("Hello?") and then waits — silence
  after less than ``machine_greeting_ms`` of talk → ``human``;
* a machine plays a long unbroken greeting ("Hi, you've reached …, please leave a
  message after the tone") → ``machine`` once the talk passes ``machine_greeting_ms``
  without a pause of ``end_of_talk_ms``;
* a beep — one steady tone of 400-2000 Hz for at least ``beep_ms`` — is a
  machine too, and it ends the greeting. The tone test is spectral purity: the
  strongest FFT peak (±2 bins of a Hann-windowed frame) must hold ``tone_purity``
  of the frame's energy, and stay on the same frequency frame after frame;
  speech, with its harmonics and moving formants, does neither;
* nobody talks for ``initial_silence_ms`` → ``unknown``.

A short greeting can be a machine's too ("Leave a message." — beep): after
``human`` the detector listens ``beep_watch_ms`` more for a beep only, and a beep
then still turns the verdict into ``machine`` (the bridge stops the agent and
leaves the message).

After ``machine`` it keeps listening for the end of the greeting: the end of the
beep, ``greeting_silence_ms`` of silence after the talk, or ``max_greeting_ms``
since the answer, and says so with ``greeting_ended=True`` — the moment to
speak a voicemail message. Then it is ``finished`` and costs nothing more.

Cost: one table lookup and a dot product per frame, and a 160-point FFT only for
frames loud enough to be a beep; ``bench_amd.py`` measures accuracy and time to
verdict on recordings made with the local TTS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Verdict = Literal["human", "machine", "unknown"]
SAMPLE_RATE = 8000


def _ulaw_table() -> np.ndarray:
    """μ-law code → linear sample (ITU-T G.711), as float64."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign, -(magnitude - 0x84), magnitude - 0x84).astype(np.float64)


_ULAW = _ulaw_table()


@dataclass(frozen=True, slots=True)
class AmdConfig:
    machine_greeting_ms: int = 2000  # talk longer than this without a pause: a machine
    end_of_talk_ms: int = 700  # a pause this long ends a person's greeting
    initial_silence_ms: int = 4000  # nobody spoke: unknown
    beep_ms: int = 160  # a steady tone this long is a beep
    greeting_silence_ms: int = 1500  # a machine's greeting is over after this much silence
    max_greeting_ms: int = 30_000  # stop waiting for a machine's greeting to end
    beep_watch_ms: int = 2000  # after "human", a beep this soon still means a machine
    speech_rms: float = 300.0  # PCM16 RMS floor for talk (about -40 dBFS)
    noise_margin: float = 2.5  # talk must also be this many times the noise floor
    tone_purity: float = 0.9  # a beep is a sine: >0.95 even under line noise
    tone_low_hz: float = 400.0
    tone_high_hz: float = 2000.0


@dataclass(frozen=True, slots=True)
class AmdDecision:
    verdict: Verdict
    greeting_ended: bool
    cue: str  # what decided it: short_greeting, long_greeting, beep, silence, timeout, ...
    at_ms: int  # audio time since the answer when it was decided


class MachineDetector:
    """Feed the callee's μ-law frames in order; each ``feed`` returns the decisions
    that frame completed: first the verdict, then (for a machine) the end of its
    greeting. ``finished`` once there is nothing more to say."""

    def __init__(self, config: AmdConfig | None = None) -> None:
        self.config = config or AmdConfig()
        self.verdict: Verdict | None = None
        self.finished = False
        self._ms = 0
        self._noise = self.config.speech_rms / self.config.noise_margin
        self._talk_start: int | None = None  # ms of the first talk frame
        self._last_talk: int | None = None  # ms at the end of the last talk frame
        self._tone_ms = 0
        self._tone_bin = -1
        self._beep_heard = False
        self._watch_until = 0
        self._window = np.hanning(160)

    # ------------------------------------------------------------ per frame

    def feed(self, ulaw: bytes) -> list[AmdDecision]:
        if self.finished or not ulaw:
            return []
        samples = _ULAW[np.frombuffer(ulaw, dtype=np.uint8)]
        frame_ms = len(ulaw) * 1000 // SAMPLE_RATE
        rms = float(np.sqrt(np.dot(samples, samples) / len(samples)))
        # The noise floor follows the quietest frames at once and creeps up slowly
        # (x1.6 a second), so a loud line is learnt within seconds while the dips
        # between words keep it under the talk.
        self._noise = max(rms, 1.0) if rms < self._noise else self._noise * 1.01
        threshold = max(self.config.speech_rms, self._noise * self.config.noise_margin)
        talk = rms >= threshold
        tonal = talk and self._is_tone(samples)
        start = self._ms
        self._ms += frame_ms
        out: list[AmdDecision] = []
        self._track_tone(tonal, frame_ms, out)
        if talk:
            if self._talk_start is None:
                self._talk_start = start
            self._last_talk = self._ms
        if not self.finished:
            self._decide(out)
        return out

    def _is_tone(self, samples: np.ndarray) -> bool:
        if len(samples) != len(self._window):
            return False
        power = np.abs(np.fft.rfft(samples * self._window)) ** 2
        peak = int(np.argmax(power[1:])) + 1
        hz = peak * SAMPLE_RATE / len(samples)
        if not self.config.tone_low_hz <= hz <= self.config.tone_high_hz:
            return False
        total = float(power.sum())
        near = float(power[max(peak - 2, 0):peak + 3].sum())
        if total <= 0 or near / total < self.config.tone_purity:
            return False
        steady = self._tone_bin < 0 or abs(peak - self._tone_bin) <= 1
        self._tone_bin = peak
        return steady

    def _track_tone(self, tonal: bool, frame_ms: int, out: list[AmdDecision]) -> None:
        if tonal:
            self._tone_ms += frame_ms
            if self._tone_ms >= self.config.beep_ms and not self._beep_heard:
                self._beep_heard = True
                if self.verdict != "machine":  # none yet, or a short greeting was a machine's
                    self._say(out, "machine", False, "beep")
            if self._tone_ms >= 1500 and self._beep_heard:
                self._say(out, "machine", True, "beep")  # a long tone: do not wait for its end
            return
        if self._beep_heard and self.verdict == "machine":
            self._say(out, "machine", True, "beep")  # the beep just ended
        self._tone_ms = 0
        self._tone_bin = -1

    def _decide(self, out: list[AmdDecision]) -> None:
        c = self.config
        now = self._ms
        if self.verdict == "human":
            if now >= self._watch_until:
                self.finished = True  # no beep followed the short greeting
            return
        if self.verdict is None:
            if self._talk_start is None:
                if now >= c.initial_silence_ms:
                    self._say(out, "unknown", False, "initial_silence")
                return
            assert self._last_talk is not None
            talk_ms = self._last_talk - self._talk_start
            pause_ms = now - self._last_talk
            if pause_ms >= c.end_of_talk_ms and talk_ms < c.machine_greeting_ms:
                self._say(out, "human", False, "short_greeting")
            elif talk_ms >= c.machine_greeting_ms:
                self._say(out, "machine", False, "long_greeting")
            return
        if self.verdict == "machine":
            assert self._last_talk is not None
            if now - self._last_talk >= c.greeting_silence_ms:
                self._say(out, "machine", True, "silence")
            elif now >= c.max_greeting_ms:
                self._say(out, "machine", True, "timeout")

    def _say(self, out: list[AmdDecision], verdict: Verdict, ended: bool, cue: str) -> None:
        if self.finished:
            return
        self.verdict = verdict
        out.append(AmdDecision(verdict, ended, cue, self._ms))
        if verdict == "human":
            self._watch_until = self._ms + self.config.beep_watch_ms
        elif verdict == "unknown" or ended:
            self.finished = True
