import numpy as np
import pytest

from agentplatform.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16


def test_every_ulaw_code_survives_decode_and_encode_except_negative_zero():
    codes = bytes(range(256))
    back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    changed = {code: back[code] for code in range(256) if back[code] != code}
    # 0x7F is μ-law's "−0": it decodes to 0 like 0xFF ("+0"), and 0 encodes as 0xFF.
    assert changed == {0x7F: 0xFF}


def test_decoding_gives_two_bytes_per_code_and_the_g711_extremes():
    pcm = ulaw_to_pcm16(bytes([0x00, 0x80, 0xFF]))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [-32124, 32124, 0]


def test_encoding_is_monotonic_in_level():
    ramp = np.arange(-32124, 32125, 37, dtype=np.int64)  # μ-law's full range is ±32124
    encoded = pcm16_to_ulaw(ramp.astype("<i2").tobytes())
    decoded = np.frombuffer(ulaw_to_pcm16(encoded), dtype="<i2").astype(np.int64)
    assert np.all(np.diff(decoded) >= 0)
    # μ-law keeps the error relative to the level: within 1/16 of the sample plus a step.
    assert np.all(np.abs(decoded - ramp) <= np.abs(ramp) / 16 + 8)


def test_odd_length_pcm_is_rejected():
    with pytest.raises(ValueError, match="even number of bytes"):
        pcm16_to_ulaw(b"\x01\x02\x03")


def test_alaw_and_ulaw_convert_through_tables_close_to_the_linear_value():
    from agentplatform.audio.codecs import alaw_to_pcm16, alaw_to_ulaw, ulaw_to_alaw

    codes = bytes(range(256))
    direct = np.frombuffer(alaw_to_pcm16(codes), dtype="<i2").astype(np.int64)
    via_ulaw = np.frombuffer(ulaw_to_pcm16(alaw_to_ulaw(codes)), dtype="<i2").astype(np.int64)
    # Both laws keep the error relative to the level; one conversion adds at most a step.
    assert np.all(np.abs(direct - via_ulaw) <= np.abs(direct) / 16 + 16)
    assert ulaw_to_alaw(b"\xff") == b"\xd5"  # silence stays silence
    assert len(alaw_to_ulaw(codes)) == 256


def test_alaw_encoding_round_trips_every_code():
    from agentplatform.audio.codecs import alaw_to_pcm16, pcm16_to_alaw

    codes = bytes(range(256))
    assert pcm16_to_alaw(alaw_to_pcm16(codes)) == codes
