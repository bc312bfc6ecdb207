import math
import os

import numpy as np
import pytest
from scipy import signal

from agentplatform.audio.frames import tone
from agentplatform.audio.resample import (
    KERNELS,
    IdentityResampler,
    PolyphaseResampler,
    SoxrResampler,
    compiled_kernel_available,
    make_resampler,
)

PAIRS = [(8000, 24000), (24000, 8000), (8000, 16000), (16000, 8000), (24000, 16000)]


@pytest.fixture(params=KERNELS)
def kernel(request) -> str:
    """Each streaming test runs on the compiled kernel and on the NumPy path."""
    if request.param == "compiled" and not compiled_kernel_available():
        if os.environ.get("AGENTPLATFORM_REQUIRE_COMPILED") == "1":
            pytest.fail("the compiled resampler kernel was not built")
        pytest.skip("the compiled resampler kernel was not built (no compiler at install)")
    return request.param


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def stream(resampler, pcm: bytes, chunk_ms: int = 20) -> bytes:
    size = resampler.in_rate * chunk_ms // 1000 * 2
    return b"".join(resampler.process(pcm[i : i + size]) for i in range(0, len(pcm), size))


def fit_tone(y: np.ndarray, freq: float, rate: int) -> tuple[float, float]:
    """Least-squares amplitude of a sine at ``freq`` in ``y`` (any phase, so any delay),
    and the RMS of what is left over (noise + distortion)."""
    t = np.arange(len(y)) / rate
    basis = np.column_stack([np.sin(2 * math.pi * freq * t), np.cos(2 * math.pi * freq * t)])
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    residual = y - basis @ coef
    return float(np.hypot(*coef)), float(np.sqrt(np.mean(residual**2)))


def band_noise(rate: int, seconds: float = 0.5) -> bytes:
    """Speech-band (300–3400 Hz) noise: a signal with a well-defined delay."""
    raw = np.random.default_rng(7).normal(0.0, 4000.0, int(rate * seconds))
    band = signal.firwin(255, [300, 3400], pass_zero=False, fs=rate)
    return np.clip(np.convolve(raw, band, "same"), -32768, 32767).astype("<i2").tobytes()


def lag_ms(y: np.ndarray, reference: np.ndarray, rate: int) -> float:
    n = min(len(y), len(reference))
    corr = signal.correlate(y[:n], reference[:n], mode="full")
    return (int(corr.argmax()) - (n - 1)) / rate * 1000.0


def test_round_trip_8k_24k_8k_keeps_a_1khz_tone_clean():
    source = tone(1000, 1000, 8000, amplitude=0.5)
    up = stream(PolyphaseResampler(8000, 24000), source)
    back = samples(stream(PolyphaseResampler(24000, 8000), up))[400:]  # skip start-up
    amplitude, residual = fit_tone(back, 1000, 8000)
    snr_db = 20 * math.log10(amplitude / math.sqrt(2) / residual)
    assert snr_db > 30
    assert abs(20 * math.log10(amplitude / (0.5 * 32768))) < 0.5


@pytest.mark.parametrize("freq", [300, 2000, 3000])
def test_round_trip_passband_loses_under_1db(freq):
    source = tone(freq, 1000, 8000, amplitude=0.5)
    up = stream(PolyphaseResampler(8000, 24000), source)
    back = samples(stream(PolyphaseResampler(24000, 8000), up))[400:]
    amplitude, _ = fit_tone(back, freq, 8000)
    assert abs(20 * math.log10(amplitude / (0.5 * 32768))) < 1.0


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "freq"),
    [(24000, 8000, 6000), (24000, 8000, 4200), (16000, 8000, 5000), (24000, 16000, 9000)],
)
def test_decimation_rejects_what_would_alias_by_50db(in_rate, out_rate, freq):
    source = tone(freq, 1000, in_rate, amplitude=0.5)
    out = samples(stream(PolyphaseResampler(in_rate, out_rate), source))[out_rate // 20 :]
    in_rms = 0.5 * 32768 / math.sqrt(2)
    out_rms = math.sqrt(float(np.mean(out**2)))
    assert 20 * math.log10(max(out_rms, 1e-9) / in_rms) <= -50


def test_interpolation_rejects_images_of_the_passband():
    # A 3 kHz tone at 8 kHz has its first image at 5 kHz once zero-stuffed to 24 kHz.
    out = samples(stream(PolyphaseResampler(8000, 24000), tone(3000, 1000, 8000, 0.5)))[1200:]
    wanted, leftover = fit_tone(out, 3000, 24000)
    image, _ = fit_tone(out, 5000, 24000)
    assert 20 * math.log10(image / wanted) <= -50
    assert leftover < wanted * 10 ** (-50 / 20)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_each_20ms_chunk_yields_exactly_its_share(in_rate, out_rate, kernel):
    resampler = PolyphaseResampler(in_rate, out_rate, kernel=kernel)
    source = tone(440, 1000, in_rate)
    size = in_rate // 50 * 2
    lengths = {len(resampler.process(source[i : i + size])) for i in range(0, len(source), size)}
    assert lengths == {out_rate // 50 * 2}


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_odd_sized_chunks_never_hold_back_more_than_a_fraction_of_a_sample(
    in_rate, out_rate, kernel
):
    resampler = PolyphaseResampler(in_rate, out_rate, kernel=kernel)
    source = tone(440, 200, in_rate)
    rng = np.random.default_rng(3)
    fed = produced = 0
    while fed < len(source) // 2:
        n = int(rng.integers(1, 200))
        produced += len(resampler.process(source[2 * fed : 2 * (fed + n)])) // 2
        fed = min(fed + n, len(source) // 2)
        assert produced == -(-fed * out_rate // in_rate)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_chunked_output_equals_one_shot_output(in_rate, out_rate, kernel):
    source = band_noise(in_rate)
    whole = PolyphaseResampler(in_rate, out_rate, kernel=kernel).process(source)
    chunked_resampler = PolyphaseResampler(in_rate, out_rate, kernel=kernel)
    rng = np.random.default_rng(5)
    pieces, pos = [], 0
    while pos < len(source):
        n = 2 * int(rng.integers(1, 500))
        pieces.append(chunked_resampler.process(source[pos : pos + n]))
        pos += n
    assert b"".join(pieces) == whole


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_delay_of_speech_band_audio_is_under_2ms(in_rate, out_rate):
    source = band_noise(in_rate)
    out = samples(stream(PolyphaseResampler(in_rate, out_rate), source))
    g = math.gcd(in_rate, out_rate)
    reference = signal.resample_poly(samples(source), out_rate // g, in_rate // g)
    delay = lag_ms(out, reference, out_rate)
    assert 0.0 <= delay <= 2.0


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_reported_filter_delay_at_1khz_is_under_2ms(in_rate, out_rate):
    resampler = PolyphaseResampler(in_rate, out_rate)
    assert 0.0 < resampler.delay_samples / out_rate * 1000.0 <= 2.0


def test_many_chunk_shapes_keep_a_bounded_plan_cache_and_correct_output(kernel):
    source = band_noise(24000, 0.3)
    whole = PolyphaseResampler(24000, 8000, kernel=kernel).process(source)
    resampler = PolyphaseResampler(24000, 8000, kernel=kernel)
    pieces, pos, n = [], 0, 1
    while pos < len(source):
        pieces.append(resampler.process(source[pos : pos + 2 * n]))
        pos, n = pos + 2 * n, n + 1
    assert b"".join(pieces) == whole
    assert len(resampler._plans) <= 32


def test_reset_forgets_the_history(kernel):
    resampler = PolyphaseResampler(24000, 8000, kernel=kernel)
    resampler.process(tone(1000, 30, 24000, 0.9))
    resampler.process(tone(1000, 7, 24000, 0.9))  # leaves a partial phase behind
    resampler.reset()
    source = band_noise(24000, 0.1)
    fresh = PolyphaseResampler(24000, 8000, kernel=kernel)
    assert resampler.process(source) == fresh.process(source)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_output_matches_direct_up_filter_down_saturated_to_int16(in_rate, out_rate, kernel):
    # A full-scale square wave overshoots after filtering, so saturation is exercised;
    # int16 wrap-around would turn the overshoot into samples of the wrong sign.
    t = np.arange(in_rate // 5) / in_rate
    square = np.where(np.sin(2 * math.pi * 500 * t) >= 0, 32767, -32768).astype("<i2")
    resampler = PolyphaseResampler(in_rate, out_rate, kernel=kernel)
    out = samples(stream(resampler, square.tobytes()))
    up, down = resampler.up, resampler.down
    direct = signal.upfirdn(resampler.taps * up, square.astype(np.float64), up, down)[: len(out)]
    assert direct.max() > 32767
    assert np.array_equal(out, np.clip(np.rint(direct), -32768, 32767))


def test_odd_byte_count_is_rejected(kernel):
    with pytest.raises(ValueError, match="even number of bytes"):
        PolyphaseResampler(8000, 24000, kernel=kernel).process(b"\x00\x01\x02")


def test_awkward_ratio_is_rejected_with_a_pointer_to_soxr():
    with pytest.raises(ValueError, match="SoxrResampler"):
        PolyphaseResampler(44100, 16000)


def test_make_resampler_passes_equal_rates_through_unchanged():
    resampler = make_resampler(16000, 16000)
    pcm = tone(440, 20, 16000)
    assert isinstance(resampler, IdentityResampler)
    assert resampler.process(pcm) == pcm


def test_make_resampler_picks_the_low_latency_resampler():
    resampler = make_resampler(8000, 24000)
    assert isinstance(resampler, PolyphaseResampler)
    assert (resampler.in_rate, resampler.out_rate) == (8000, 24000)


def test_soxr_quick_quality_lets_a_6khz_tone_alias_to_2khz_at_full_level():
    """Why the low-latency path is not soxr QQ: it does no anti-aliasing."""
    out = samples(stream(SoxrResampler(24000, 8000, "QQ"), tone(6000, 1000, 24000, 0.5)))[400:]
    alias, _ = fit_tone(out, 2000, 8000)
    assert 20 * math.log10(alias / (0.5 * 32768)) > -3


def test_soxr_high_quality_holds_back_the_first_chunk():
    """Why the low-latency path is not soxr HQ: it emits late and in bursts."""
    resampler = SoxrResampler(8000, 24000, "HQ")
    first = resampler.process(tone(440, 20, 8000))
    assert len(first) < 480 * 2


def test_soxr_reset_starts_the_stream_over():
    resampler = SoxrResampler(24000, 8000, "HQ")
    source = band_noise(24000, 0.2)
    size = 480 * 2

    def chunks() -> list[bytes]:
        return [resampler.process(source[i : i + size]) for i in range(0, len(source), size)]

    first = chunks()
    resampler.reset()
    again = chunks()
    # The start-up hold-back comes back; samples agree to within soxr's own rounding.
    assert [len(c) for c in again] == [len(c) for c in first]
    assert len(first[0]) == 0
    assert np.abs(samples(b"".join(again)) - samples(b"".join(first))).max() <= 4


def test_soxr_rejects_an_unknown_quality():
    with pytest.raises(ValueError, match="quality"):
        SoxrResampler(8000, 24000, "best")
