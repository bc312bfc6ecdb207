"""G.711 μ-law ⇄ PCM16 (mono, signed 16-bit little-endian).

The phone side speaks 8 kHz μ-law; models speak PCM16. These two functions run on
every 20 ms frame of every call, so they are thin wrappers over ``audioop``'s C
tables (the ``audioop-lts`` package provides the module on Python 3.13+).

μ-law has two zeros: code 0xFF (+0) and 0x7F (−0). Both decode to sample 0, which
encodes back to 0xFF, so a decode/encode round trip returns every code unchanged
except 0x7F, which comes back as 0xFF; the sound is the same.
"""

from __future__ import annotations

import audioop

from agentplatform.audio.frames import check_pcm16

SAMPLE_WIDTH = 2  # bytes per PCM16 sample


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """Decode μ-law bytes (one byte per sample) into PCM16 little-endian."""
    return audioop.ulaw2lin(ulaw, SAMPLE_WIDTH)


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian into μ-law; the length must be even."""
    check_pcm16(pcm)
    return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)
