"""Audio helpers on the call path: μ-law codecs, streaming resamplers, levels and
test signals, WAV files and a cheap VAD. Everything is PCM16 mono little-endian
unless a name says μ-law."""

from agentplatform.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from agentplatform.audio.frames import frame_bytes, rms_dbfs, silence, tone
from agentplatform.audio.resample import (
    IdentityResampler,
    PolyphaseResampler,
    Resampler,
    SoxrResampler,
    make_resampler,
    warm_up,
)
from agentplatform.audio.vad import EnergyVad, VadEvent
from agentplatform.audio.wav import load_wav, read_wav, write_wav

__all__ = [
    "EnergyVad",
    "IdentityResampler",
    "PolyphaseResampler",
    "Resampler",
    "SoxrResampler",
    "VadEvent",
    "frame_bytes",
    "load_wav",
    "make_resampler",
    "pcm16_to_ulaw",
    "read_wav",
    "rms_dbfs",
    "silence",
    "tone",
    "ulaw_to_pcm16",
    "warm_up",
]
