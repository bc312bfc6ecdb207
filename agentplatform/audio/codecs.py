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


# --------------------------------------------------------------- G.711 A-law
#
# SIP trunks may choose A-law (PCMA) instead of μ-law. The rest of the platform
# speaks μ-law, so an A-law call is converted byte for byte at the carrier edge.
# Both laws code 8-bit samples, so each direction is a 256-byte lookup table built
# once from the C codecs; ``bytes.translate`` applies it at C speed.

# A-law has no zero code either: 0xD5 is the quietest sample, what a silent A-law line carries.
ALAW_SILENCE = 0xD5


def alaw_to_pcm16(alaw: bytes) -> bytes:
    """Decode A-law bytes (one byte per sample) into PCM16 little-endian."""
    return audioop.alaw2lin(alaw, SAMPLE_WIDTH)


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian into A-law; the length must be even."""
    check_pcm16(pcm)
    return audioop.lin2alaw(pcm, SAMPLE_WIDTH)


_ALL_CODES = bytes(range(256))
ALAW_TO_ULAW: bytes = audioop.lin2ulaw(audioop.alaw2lin(_ALL_CODES, SAMPLE_WIDTH), SAMPLE_WIDTH)
ULAW_TO_ALAW: bytes = audioop.lin2alaw(audioop.ulaw2lin(_ALL_CODES, SAMPLE_WIDTH), SAMPLE_WIDTH)


def alaw_to_ulaw(alaw: bytes) -> bytes:
    """A-law → μ-law, sample for sample (same length, same rate)."""
    return alaw.translate(ALAW_TO_ULAW)


def ulaw_to_alaw(ulaw: bytes) -> bytes:
    """μ-law → A-law, sample for sample (same length, same rate)."""
    return ulaw.translate(ULAW_TO_ALAW)
