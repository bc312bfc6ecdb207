"""Real speech for tests, made at test time with the local Piper voice.

Why generated rather than committed WAVs: any sentence a test needs is one call away,
and the audio is real speech (a VAD, a recogniser and a phone line all treat it as
such), not a tone. Results are cached per process, so a sentence costs its render
time (~0.1–0.3 s) once per test session.
"""

from __future__ import annotations

from functools import lru_cache

from agentplatform.audio.codecs import pcm16_to_ulaw
from agentplatform.audio.wav import resample_whole
from agentplatform.speech.tts_local import synthesize_sentences, voice_rate


@lru_cache(maxsize=64)
def spoken(text: str, rate: int = 8000) -> bytes:
    """PCM16 mono at ``rate`` of the local voice saying ``text``."""
    pcm = b"".join(synthesize_sentences(text, steady=True))  # same text, same audio
    return resample_whole(pcm, voice_rate(), rate)  # soxr HQ: no stream waits on it here


@lru_cache(maxsize=64)
def spoken_ulaw(text: str) -> bytes:
    """8 kHz μ-law of the local voice saying ``text``, as a caller's phone sends it."""
    return pcm16_to_ulaw(spoken(text, 8000))
