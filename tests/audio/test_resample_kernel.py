"""The compiled polyphase kernel against the NumPy path it replaces on the call path."""

import logging
import math
import os

import numpy as np
import pytest
from scipy import signal

from agentplatform.audio import resample
from agentplatform.audio.frames import tone
from agentplatform.audio.resample import PolyphaseResampler, compiled_kernel_available

PAIRS = [(8000, 24000), (24000, 8000), (8000, 16000), (16000, 8000), (24000, 16000)]
REQUIRED = os.environ.get("AGENTPLATFORM_REQUIRE_COMPILED") == "1"

needs_kernel = pytest.mark.skipif(
    not compiled_kernel_available() and not REQUIRED,
    reason="the compiled resampler kernel was not built (no compiler at install)",
)


def test_compiled_kernel_is_built_when_required():
    """Under `make test` (AGENTPLATFORM_REQUIRE_COMPILED=1) a missing kernel is a failure."""
    if not REQUIRED and not compiled_kernel_available():
        pytest.skip("the compiled resampler kernel was not built (no compiler at install)")
    assert compiled_kernel_available(), resample._KERNEL_MISSING
    from agentplatform.audio import _polyphase

    assert callable(_polyphase.Kernel)


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int64)


def signals(rate: int) -> dict[str, bytes]:
    """Random and real-ish audio, one second each, including full-scale clipping."""
    rng = np.random.default_rng(rate)
    n = rate
    t = np.arange(n) / rate
    band = signal.firwin(255, [300, 3400], pass_zero=False, fs=rate)
    speechy = np.convolve(rng.normal(0.0, 6000.0, n), band, "same")
    envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 3 * t)  # syllable-rate swell
    return {
        "white full scale": pcm(rng.uniform(-32768, 32767, n)),
        "speech band": pcm(speechy * envelope),
        "tone sweep": pcm(20000 * signal.chirp(t, 100, 1.0, min(rate, 8000) * 0.45)),
        "square (overshoot clips)": pcm(np.where(np.sin(2 * math.pi * 500 * t) >= 0,
                                                 32767, -32768)),
        "silence then a step": pcm(np.where(t >= 0.5, 12345.0, 0.0)),
    }


def feed(resampler: PolyphaseResampler, source: bytes, sizes) -> bytes:
    """Feed ``source`` in chunks of ``sizes`` samples (cycled); join the output."""
    out, pos, i = [], 0, 0
    while pos < len(source):
        n = 2 * sizes[i % len(sizes)]
        out.append(resampler.process(source[pos : pos + n]))
        pos, i = pos + n, i + 1
    return b"".join(out)


CHUNKINGS = {
    "20 ms": None,  # filled per rate
    "1 sample": [1],
    "odd sizes": [1, 3, 7, 159, 161, 2, 481, 997],
    "random 1-2000": list(np.random.default_rng(11).integers(1, 2000, 64)),
}


@needs_kernel
@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_compiled_output_matches_numpy_within_one_step(in_rate, out_rate, chunking):
    """Same filter, same stream state: the two paths can differ only where a float64 sum,
    added in another order, falls within ~1e-9 of an int16 rounding boundary."""
    sizes = CHUNKINGS[chunking] or [in_rate // 50]
    compared = differing = 0
    for name, source in signals(in_rate).items():
        fast = samples(feed(PolyphaseResampler(in_rate, out_rate, kernel="compiled"),
                            source, sizes))
        slow = samples(feed(PolyphaseResampler(in_rate, out_rate, kernel="numpy"),
                            source, sizes))
        fed = len(source) // 2
        assert len(fast) == len(slow) == -(-fed * out_rate // in_rate), name
        assert np.abs(fast - slow).max() <= 1, name
        compared += len(fast)
        differing += int(np.count_nonzero(fast != slow))
    # A wrong phase or history would differ almost everywhere, not in a rare tie.
    assert differing <= compared // 10_000


@needs_kernel
@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_compiled_chunked_equals_whole_and_state_matches_numpy_after_every_chunk(
    in_rate, out_rate
):
    source = signals(in_rate)["speech band"]
    whole = PolyphaseResampler(in_rate, out_rate, kernel="compiled").process(source)
    fast = PolyphaseResampler(in_rate, out_rate, kernel="compiled")
    slow = PolyphaseResampler(in_rate, out_rate, kernel="numpy")
    rng = np.random.default_rng(in_rate + out_rate)
    pieces, pos = [], 0
    while pos < len(source):
        n = 2 * int(rng.choice([1, 2, 3, 5, 160, 480, int(rng.integers(1, 700))]))
        pieces.append(fast.process(source[pos : pos + n]))
        slow.process(source[pos : pos + n])
        assert (fast._kernel.lead, fast._kernel.phase) == (slow._lead, slow._phase)
        pos += n
    assert b"".join(pieces) == whole


@needs_kernel
def test_compiled_reset_mid_phase_starts_over():
    resampler = PolyphaseResampler(24000, 16000, kernel="compiled")
    resampler.process(tone(1000, 10, 24000, 0.9)[: 2 * 169])  # 169 × 2/3: a partial phase
    assert (resampler._kernel.lead, resampler._kernel.phase) != (0, 0)
    resampler.reset()
    source = signals(24000)["speech band"]
    fresh = PolyphaseResampler(24000, 16000, kernel="compiled")
    assert resampler.process(source) == fresh.process(source)


@needs_kernel
def test_compiled_kernel_takes_any_bytes_like_chunk():
    source = signals(8000)["speech band"][:320]
    expected = PolyphaseResampler(8000, 24000, kernel="compiled").process(source)
    for chunk in (bytearray(source), memoryview(source)):
        assert PolyphaseResampler(8000, 24000, kernel="compiled").process(chunk) == expected
    assert PolyphaseResampler(8000, 24000, kernel="compiled").process(b"") == b""


@needs_kernel
def test_kernel_clips_then_rounds_half_to_even_like_numpy():
    from agentplatform.audio._polyphase import Kernel

    values = np.array([1, 3, 5, -1, -3, -5, 7, 20000, -20000, 32767, -32768], dtype="<i2")
    halved = samples(Kernel(np.array([[0.5]]), 1, 1).process(values.tobytes()))
    assert list(halved) == list(np.rint(values / 2.0).astype(int))  # 0.5 → 0, 1.5 → 2, …
    doubled = samples(Kernel(np.array([[2.0]]), 1, 1).process(values.tobytes()))
    assert list(doubled) == list(np.clip(values * 2.0, -32768, 32767).astype(int))


@needs_kernel
def test_kernel_refuses_branches_that_are_not_float64_rows_of_up():
    from agentplatform.audio._polyphase import Kernel

    with pytest.raises(TypeError, match="float64"):
        Kernel(np.ones((3, 4), dtype=np.float32), 3, 1)
    with pytest.raises(ValueError, match="multiple of up"):
        Kernel(np.ones(7), 3, 1)
    with pytest.raises(RuntimeError, match="not initialised"):
        Kernel.__new__(Kernel).process(b"\x00\x00")


def test_env_switch_forces_the_numpy_path(monkeypatch):
    monkeypatch.setenv("AGENTPLATFORM_RESAMPLER", "numpy")
    resampler = PolyphaseResampler(8000, 24000)
    assert resampler.kernel == "numpy" and resampler._kernel is None


@needs_kernel
def test_default_path_is_the_compiled_kernel(monkeypatch):
    monkeypatch.delenv("AGENTPLATFORM_RESAMPLER", raising=False)
    assert PolyphaseResampler(24000, 8000).kernel == "compiled"
    assert resample.make_resampler(8000, 24000).kernel == "compiled"


def test_unknown_env_value_is_refused(monkeypatch):
    monkeypatch.setenv("AGENTPLATFORM_RESAMPLER", "fortran")
    with pytest.raises(ValueError, match="AGENTPLATFORM_RESAMPLER"):
        PolyphaseResampler(8000, 24000)


def test_without_the_kernel_numpy_serves_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(resample, "_polyphase", None)
    monkeypatch.setattr(resample, "_KERNEL_MISSING", "compiled resampler kernel not available")
    monkeypatch.setattr(resample, "_logged_kernel", None)
    monkeypatch.delenv("AGENTPLATFORM_RESAMPLER", raising=False)
    with caplog.at_level(logging.INFO, logger=resample.__name__):
        first = PolyphaseResampler(8000, 24000)
        second = PolyphaseResampler(24000, 8000)
    assert first.kernel == second.kernel == "numpy"
    notes = [r for r in caplog.records if r.name == resample.__name__]
    assert len(notes) == 1 and notes[0].levelno == logging.WARNING
    assert "NumPy" in notes[0].getMessage()
    monkeypatch.setenv("AGENTPLATFORM_RESAMPLER", "compiled")
    with pytest.raises(RuntimeError, match="not available"):
        PolyphaseResampler(8000, 24000)


@needs_kernel
def test_the_path_in_use_is_logged_when_it_is_first_chosen(monkeypatch, caplog):
    monkeypatch.setattr(resample, "_logged_kernel", None)
    monkeypatch.delenv("AGENTPLATFORM_RESAMPLER", raising=False)
    with caplog.at_level(logging.INFO, logger=resample.__name__):
        resample.warm_up(((8000, 24000), (24000, 8000)))
    notes = [r.getMessage() for r in caplog.records if r.name == resample.__name__]
    assert notes == ["resampler: compiled polyphase kernel"]
