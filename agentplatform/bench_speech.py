"""``make bench`` for recognition: word error rate on phone audio, per local STT option.

Method: every question in ``speech/data/phone_questions.txt`` (short caller questions,
plain words) is spoken by each test voice — the shipped Piper voice, and espeak-ng's
US and British English voices when ``espeak-ng`` is installed (a different
synthesizer, so the table is not one voice's accent) — then sent down a simulated
phone line (``speech/phone_line.py``: 8 kHz, hiss at 20 dB SNR, μ-law both ways) and
brought back up to 16 kHz as the call path does. Each local STT option transcribes
every clip on the STT thread's settings; the table gives WER per voice and overall,
and the latency per utterance (p50/p90, wall clock, one at a time).

It also times the voice: Piper's render of an answer's first piece as the cascade
cuts it (up to the first comma) against the whole first sentence, with nothing
cached — what a caller waits for when the text is new (an LLM's answer).

Runs in its own process (``python -m agentplatform.bench_speech``), free of the
bench's core pinning; prints one JSON object. Figures are reported, never asserted.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from importlib import resources

from agentplatform.audio.wav import resample_whole
from agentplatform.speech import stt_local
from agentplatform.speech.phone_line import phone_line
from agentplatform.speech.tts_local import synthesize_sentences, voice_rate
from agentplatform.speech.wer import word_error_rate

SNR_DB = 20.0
ESPEAK_VOICES = {"espeak-ng en-us": "en-us", "espeak-ng en-gb": "en-gb"}
ESPEAK_WORDS_PER_MINUTE = 165

Voice = Callable[[str], tuple[bytes, int]]


def questions() -> list[str]:
    text = resources.files("agentplatform.speech").joinpath("data/phone_questions.txt")
    return [line.strip() for line in text.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def piper(text: str) -> tuple[bytes, int]:
    """The shipped voice, noise off (the same clip every run)."""
    spoken = text[0].upper() + text[1:] + "?"
    return b"".join(synthesize_sentences(spoken, steady=True)), voice_rate()


def espeak(voice: str) -> Voice:
    def speak(text: str) -> tuple[bytes, int]:
        out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(ESPEAK_WORDS_PER_MINUTE),
                              "--stdout", text], capture_output=True, check=True).stdout
        with wave.open(io.BytesIO(out)) as wav:
            return wav.readframes(wav.getnframes()), wav.getframerate()
    return speak


def voices() -> dict[str, Voice]:
    found: dict[str, Voice] = {"piper joe": piper}
    if shutil.which("espeak-ng"):
        found.update({name: espeak(code) for name, code in ESPEAK_VOICES.items()})
    return found


def _pct(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))] if data else 0.0


FIRST_PIECES = ("We're open Monday to Friday, from 8 in the morning to 5 in the afternoon.",
                "I'm sorry to hear that, let me put you through to our front desk staff.",
                "Yes, there is free parking behind the building, right off Maple Street.")
VOICE_REPEATS = 5


def voice_timings() -> dict[str, dict[str, float]]:
    """Render time of the first piece vs the whole sentence, ms p50 / p90."""
    from agentplatform.cascade.warmup import spoken_pieces
    from agentplatform.speech import tts_local

    tts_local.preload()
    waits: dict[str, list[float]] = {"first phrase": [], "whole sentence": []}
    for _ in range(VOICE_REPEATS):
        for sentence in FIRST_PIECES:
            for name, text in (("first phrase", spoken_pieces(sentence)[0]),
                               ("whole sentence", sentence)):
                started = time.perf_counter()
                next(iter(synthesize_sentences(text)))
                waits[name].append((time.perf_counter() - started) * 1000.0)
    return {name: {"p50": round(_pct(w, 50), 1), "p90": round(_pct(w, 90), 1)}
            for name, w in waits.items()}


def run() -> dict[str, object]:
    clips: list[tuple[str, str, bytes]] = []
    for name, voice in voices().items():
        for seed, text in enumerate(questions()):
            pcm, rate = voice(text)
            line = phone_line(pcm, rate, snr_db=SNR_DB, seed=seed)
            clips.append((name, text, resample_whole(line, 8000, 16000)))
    stt_local.preload()
    table: dict[str, object] = {}
    for model, mode in stt_local.MODES.items():
        by_voice: dict[str, list[tuple[str, str]]] = {}
        waits: list[float] = []
        for name, text, audio in clips:
            started = time.perf_counter()
            heard = stt_local.transcribe_sync(audio, 16000, "en",
                                              short_window=mode.short_window)
            waits.append((time.perf_counter() - started) * 1000.0)
            by_voice.setdefault(name, []).append((text, heard))
        table[model] = {
            "wer": round(word_error_rate(p for pairs in by_voice.values() for p in pairs), 3),
            "wer_by_voice": {v: round(word_error_rate(pairs), 3) for v, pairs in by_voice.items()},
            "ms": {"p50": round(_pct(waits, 50), 1), "p90": round(_pct(waits, 90), 1)},
        }
    return {"utterances": len(questions()), "voices": list(voices()), "snr_db": SNR_DB,
            "models": table, "voice_ms": voice_timings()}


def wer_table(result: dict[str, object]) -> str:
    voices_ = result["voices"]
    rows = [f"recognition on phone audio: {result['utterances']} questions x "
            f"{len(voices_)} voices, 8 kHz mu-law, {result['snr_db']:.0f} dB SNR"]
    head = f"  {'STT option':<22} {'WER':>6} " + " ".join(f"{v:>16}" for v in voices_)
    rows.append(head + f" {'ms p50 / p90':>15}")
    for model, row in result["models"].items():
        per_voice = " ".join(f"{row['wer_by_voice'][v]:>16.3f}" for v in voices_)
        rows.append(f"  {model:<22} {row['wer']:>6.3f} {per_voice} "
                    f"{row['ms']['p50']:>7.0f} / {row['ms']['p90']:<6.0f}")
    for name, ms in result.get("voice_ms", {}).items():
        rows.append(f"  Piper, uncached {name:<15} first audio {ms['p50']:>6.0f} / "
                    f"{ms['p90']:<6.0f} ms")
    return "\n".join(rows)


def run_in_process() -> dict[str, object]:
    """``run()`` in a child process on every core (the bench pins its own process)."""
    import os

    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    every = set(range(os.cpu_count() or 1))

    def unpin() -> None:
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, every)

    out = subprocess.run([sys.executable, "-m", "agentplatform.bench_speech"],
                         capture_output=True, check=True, preexec_fn=unpin).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(run()))
