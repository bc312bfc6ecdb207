"""Silero VAD: finds the caller's turns in a stream of PCM16 audio.

Why Silero rather than the energy gate in ``audio/vad.py``: on a phone line a level
gate cannot tell a voice from a door or a cough, and the cascade has to decide when
the caller has *finished* talking before it transcribes. Silero is a small neural
detector (v6, run with onnxruntime); its model file ships inside the faster-whisper
package, so nothing is downloaded at run time.

How the model is fed (the v6 graph as faster-whisper ships it): each step takes one
512-sample window at 16 kHz preceded by the last 64 samples of the previous window
(576 floats in [-1, 1]) plus the LSTM state ``h``/``c`` of the previous step, and
returns the speech probability of that window and the next state. One inference
session serves the whole process (``run`` is thread-safe; each stream keeps its own
state), with one intra-op thread: a window costs well under a millisecond.

Turn-taking, the way realtime servers describe it (``server_vad``):

* speech starts when a window's probability reaches ``threshold`` and speech then
  lasts ``min_speech_ms`` (windows below ``threshold − 0.15`` before that cancel it,
  so a click is not a turn); ``SpeechStart.at_ms`` is where it began;
* it ends once the probability has stayed below ``threshold − 0.15`` for
  ``silence_duration_ms`` (values in between keep the turn going, as in Silero's own
  hysteresis); ``SpeechEnd.at_ms`` is the stream time of that decision;
* ``SpeechEnd.audio`` is the whole utterance at 16 kHz: ``prefix_padding_ms`` before
  the start, the speech, and at most ``pause_ms`` of the silence after it;
* after ``pause_ms`` of silence a ``SpeechPause`` carries the same audio, so a listener
  can transcribe during the hangover and judge whether the words are complete; it may
  then shorten or lengthen the hangover of *that* pause (``end_pause_after``). Speech
  that resumes cancels the pause and its verdict.

Times are *stream* time: milliseconds of audio fed since the last ``reset``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from agentplatform.audio.frames import check_pcm16, check_rate
from agentplatform.audio.resample import Resampler, make_resampler

MODEL_RATE = 16000
WINDOW = 512  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the v6 graph sees in front of each window
WINDOW_MS = WINDOW * 1000 / MODEL_RATE
HYSTERESIS = 0.15  # below threshold − this counts as silence (Silero's neg_threshold)
# Silence after the last speech window before the pause hint; also the silence kept at the
# end of the utterance, so word endings are not cut and the hint's audio is the turn's.
PAUSE_MS = 100
_BYTES_PER_MS = MODEL_RATE * 2 // 1000


@dataclass(slots=True)
class SpeechStart:
    at_ms: float  # stream time the speech began


@dataclass(slots=True)
class SpeechPause:
    """The caller has been quiet for ``pause_ms``: if the quiet lasts, the turn's audio
    is exactly ``audio``. Lets a listener start transcribing during the hangover; the
    ``SpeechEnd`` that follows carries the same bytes unless speech resumed. ``at_ms``
    names the pause for ``SileroVad.end_pause_after``."""

    audio: bytes
    at_ms: float


@dataclass(slots=True)
class SpeechEnd:
    audio: bytes  # PCM16 16 kHz of the whole utterance, prefix padding included
    speech_ms: float  # from the start of speech to its last speech window
    at_ms: float  # stream time the end was decided


def model_path() -> Path:
    """The Silero v6 model inside the installed faster-whisper package."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise RuntimeError("faster-whisper is not installed; it carries the Silero VAD model")
    return Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"


@lru_cache(maxsize=1)
def _session():  # onnxruntime.InferenceSession; typed loosely to keep the import lazy
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )


def preload() -> None:
    """Load the model now (application start), so the first call does not pay for it."""
    _session()


class SileroVad:
    """One caller's stream → ``SpeechStart`` / ``SpeechEnd`` events; one instance per call."""

    def __init__(self, *, threshold: float = 0.5, prefix_padding_ms: int = 300,
                 silence_duration_ms: int = 500, min_speech_ms: int = 150,
                 pause_ms: int = PAUSE_MS, rate: int = 16000) -> None:
        check_rate(rate)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
        for name, value in (("prefix_padding_ms", prefix_padding_ms),
                            ("silence_duration_ms", silence_duration_ms),
                            ("min_speech_ms", min_speech_ms), ("pause_ms", pause_ms)):
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value!r}")
        self.threshold = threshold
        self.neg_threshold = max(threshold - HYSTERESIS, 0.01)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.min_speech_ms = min_speech_ms
        self.pause_ms = pause_ms
        self.rate = rate
        self.probability = 0.0  # of the latest window, for metrics and tuning
        self._session = _session()
        self._resampler: Resampler | None = (
            make_resampler(rate, MODEL_RATE) if rate != MODEL_RATE else None)
        self.reset()

    @property
    def speaking(self) -> bool:
        """Whether a confirmed turn is under way."""
        return self._state == "speech"

    def reset(self) -> None:
        """Forget the stream: model state, buffers and the clock."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._input = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)
        self._pending = bytearray()  # 16 kHz PCM not yet a whole window
        self._windows = 0  # windows processed: the stream clock
        self._state = "idle"  # idle → candidate → speech → idle
        self._recent = bytearray()  # idle: the last prefix_padding_ms of audio
        self._utterance = bytearray()  # candidate / speech: audio since prefix start
        self._start_ms = 0.0
        self._voiced_ms = 0.0  # candidate: speech so far
        self._last_speech_end = 0  # bytes of _utterance through the last speech window
        self._silence_from: float | None = None
        self._paused = False  # a SpeechPause was sent for the current quiet
        self._pause_at: float | None = None  # its at_ms
        self._pause_limit_ms: float | None = None  # this pause's hangover, if judged
        if self._resampler is not None:
            self._resampler.reset()

    def process(self, pcm16: bytes) -> list[SpeechStart | SpeechPause | SpeechEnd]:
        """Feed audio of any length at ``rate``; returns the events it completes."""
        check_pcm16(pcm16)
        if self._resampler is not None:
            pcm16 = self._resampler.process(pcm16)
        self._pending += pcm16
        events: list[SpeechStart | SpeechPause | SpeechEnd] = []
        size = WINDOW * 2
        while len(self._pending) >= size:
            window = bytes(self._pending[:size])
            del self._pending[:size]
            event = self._step(window)
            if event is not None:
                events.append(event)
        return events

    def _infer(self, window: bytes) -> float:
        samples = np.frombuffer(window, dtype="<i2").astype(np.float32) / 32768.0
        self._input[0, :CONTEXT] = self._input[0, -CONTEXT:]
        self._input[0, CONTEXT:] = samples
        out, self._h, self._c = self._session.run(
            None, {"input": self._input, "h": self._h, "c": self._c})
        return float(np.asarray(out).reshape(-1)[0])

    def _step(self, window: bytes) -> SpeechStart | SpeechPause | SpeechEnd | None:
        prob = self._infer(window)
        self.probability = prob
        begin_ms = self._windows * WINDOW_MS
        self._windows += 1
        end_ms = self._windows * WINDOW_MS
        if self._state == "idle":
            if prob < self.threshold:
                self._recent += window
                excess = len(self._recent) - self.prefix_padding_ms * _BYTES_PER_MS
                if excess > 0:
                    del self._recent[:excess]
                return None
            self._state = "candidate"
            self._start_ms = begin_ms
            self._voiced_ms = 0.0
            self._utterance = bytearray(self._recent)
            self._recent = bytearray()
        self._utterance += window
        if prob >= self.threshold:
            self._silence_from = None
            self._last_speech_end = len(self._utterance)
        elif prob < self.neg_threshold and self._silence_from is None:
            self._silence_from = begin_ms
        if self._state == "candidate":
            return self._confirm(prob, end_ms)
        if self._silence_from is not None and end_ms - self._silence_from >= self._hangover_ms():
            return self._finish(end_ms)
        if self._silence_from is None:
            self._paused = False
            self._pause_at = None
            self._pause_limit_ms = None
        elif not self._paused and end_ms - self._silence_from >= self.pause_ms:
            self._paused = True
            self._pause_at = end_ms
            return SpeechPause(audio=bytes(self._utterance[:self._tail_end()]), at_ms=end_ms)
        return None

    def _hangover_ms(self) -> float:
        return self.silence_duration_ms if self._pause_limit_ms is None else self._pause_limit_ms

    def end_pause_after(self, pause_at_ms: float, hangover_ms: float) -> SpeechEnd | None:
        """Give the pause named ``pause_at_ms`` its own hangover (a listener judged the
        words so far complete, or not). Returns the ``SpeechEnd`` at once if the caller
        has already been quiet that long; None if that pause is over (speech resumed,
        or the turn already ended) or the quiet must go on."""
        if self._state != "speech" or self._pause_at != pause_at_ms or self._silence_from is None:
            return None
        self._pause_limit_ms = max(0.0, hangover_ms)
        now_ms = self._windows * WINDOW_MS
        if now_ms - self._silence_from >= self._pause_limit_ms:
            return self._finish(now_ms)
        return None

    def _tail_end(self) -> int:
        return self._last_speech_end + self.pause_ms * _BYTES_PER_MS

    def _confirm(self, prob: float, end_ms: float) -> SpeechStart | None:
        if self._silence_from is not None:  # fell silent before it lasted: not a turn
            self._to_idle()
            return None
        self._voiced_ms = end_ms - self._start_ms
        if self._voiced_ms >= self.min_speech_ms:
            self._state = "speech"
            return SpeechStart(at_ms=self._start_ms)
        return None

    def _finish(self, end_ms: float) -> SpeechEnd:
        keep = min(len(self._utterance), self._tail_end())
        audio = bytes(self._utterance[:keep])
        speech_ms = (self._silence_from or end_ms) - self._start_ms
        self._to_idle()
        return SpeechEnd(audio=audio, speech_ms=speech_ms, at_ms=end_ms)

    def _to_idle(self) -> None:
        """Back to waiting; the latest audio becomes the next turn's prefix padding."""
        keep = self.prefix_padding_ms * _BYTES_PER_MS
        self._recent = bytearray(self._utterance[max(0, len(self._utterance) - keep):]) if keep else bytearray()
        self._utterance = bytearray()
        self._silence_from = None
        self._paused = False
        self._pause_at = None
        self._pause_limit_ms = None
        self._state = "idle"
