"""Streaming sample-rate conversion for PCM16 mono little-endian audio.

Every call converts audio twice per 20 ms frame (caller → model rate, model → 8 kHz),
so the resampler sits directly on the conversational latency path. General-purpose
streaming resamplers trade latency for quality: soxr's LQ…VHQ presets hold back
samples and emit in bursts, and its QQ preset holds back nothing but does no
anti-aliasing (a 6 kHz tone at 24 kHz comes out of 24k→8k at full level as a 2 kHz
alias). ``PolyphaseResampler`` is built for this path instead:

* a minimum-phase FIR (designed once per rate pair with ``scipy.signal.remez`` and
  converted with ``minimum_phase``): the same magnitude response as a linear-phase
  filter of the same length, but with most of its energy at the front, so speech
  comes through after a fraction of a millisecond instead of half the filter length;
* polyphase evaluation: only the output samples that are kept are computed, each as
  one dot product over a sliding window of the input history;
* no look-ahead: every chunk in gives exactly its share of samples out
  (``ceil`` of the running total × out/in), never waits for the next chunk;
* state between chunks is the last ``taps_per_phase − 1`` input samples, so chunked
  output is identical to converting the whole signal at once (no boundary clicks).

Filter specification, with ``fs_lo`` the lower of the two rates: passband up to
0.425·fs_lo (3.4 kHz at 8 kHz) with ≤ 0.2 dB ripple; stopband ≥ 60 dB from
0.5·fs_lo when decimating (everything that would alias is removed) and from
0.575·fs_lo when interpolating (the images of the passband are removed; images of
the thin 3.4–4 kHz band above a telephone's passband fall in the transition).

Measured with 20 ms chunks. *Hold-back* is audio owed but not yet emitted after a
chunk (max / steady-state mean); *delay* is the lag of peak cross-correlation between
the emitted stream and a zero-delay offline resampling of speech-band noise, with
the filter's own group delay at 1 kHz / 3 kHz in brackets; *alias* is the output
level of a tone that would fold into the band (6 kHz for →8k from 24k, 5 kHz from
16k, 9 kHz for 24k→16k). Times are the best of 5 × 2,000 chunks on a shared 2-core VM,
the polyphase rows on the compiled kernel with the NumPy path in brackets (one NumPy
call costs ~1 µs there, so most of the NumPy figure is per-call overhead); measure
again on the machine that will serve calls:

=================  ================  =====================  ========  ============
direction          hold-back         delay (1 kHz / 3 kHz)  alias     µs / chunk
=================  ================  =====================  ========  ============
polyphase 8k→24k   0                 0.21 ms (0.16 / 0.33)  —         2.5 (7.5)
polyphase 24k→8k   0                 0.25 ms (0.19 / 0.52)  −62 dB    3.0 (7.5)
polyphase 8k→16k   0                 0.19 ms (0.14 / 0.31)  —         1.7 (6.8)
polyphase 16k→8k   0                 0.25 ms (0.19 / 0.49)  −70 dB    2.3 (7.1)
polyphase 24k→16k  0                 0.13 ms (0.09 / 0.11)  −59 dB    3.8 (9.9)
soxr HQ 8k→24k     73 / 44 ms        bursts every ~60 ms    —         4.1
soxr HQ 24k→8k     73 / 44 ms        bursts every ~60 ms    −88 dB    3.7
soxr HQ 8k→16k     114 / 63 ms       bursts every ~100 ms   —         3.4
soxr HQ 16k→8k     114 / 63 ms       bursts every ~100 ms   −87 dB    3.3
soxr QQ 24k→8k     0                 0                      0 dB      3.2
=================  ================  =====================  ========  ============

Minimum phase means the group delay is not constant: it grows toward the band edge
(about 1 ms at 3.4 kHz), an inaudible dispersion for speech, and a good trade for
having the bulk of the signal arrive ~1.8 ms sooner than through a linear-phase
filter: one meeting even a 55 dB stopband at 24k→8k delays everything 2.1 ms.

The FIR itself runs in a small C extension (``_polyphase.c``, built by the package's
install) when it is there: the filter is still designed here and handed over as its
branches; the kernel keeps the history, the phase, the clipping and the rounding, so a
20 ms chunk is one call (2–4 µs) instead of ~9 NumPy calls (7–30 µs), and it needs no
per-chunk scratch matrix (the NumPy path keeps ~0.16 MB of them per call). Its output
has equalled the NumPy path's sample for sample on every signal and chunking tried; the
two could differ by one int16 step only where a float64 sum, added up in another order
than BLAS's, lies within ~1e-9 of a rounding boundary (the tests allow that, no more). Without the extension (no compiler at install time) the NumPy path
runs; ``AGENTPLATFORM_RESAMPLER=numpy`` forces it, ``=compiled`` demands the kernel.
The path in use is logged once, when the first resampler is made (``warm_up`` at start).

``SoxrResampler`` wraps soxr's streaming resampler with a chosen quality, kept so
benchmarks can compare against it; it is not what ``make_resampler`` returns.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import soxr
from numpy.lib.stride_tricks import as_strided
from scipy import signal

from agentplatform.audio.frames import check_pcm16, check_rate

try:
    import agentplatform.audio._polyphase as _polyphase
except ImportError as exc:  # installed without a C compiler: the NumPy path serves
    _polyphase = None
    _KERNEL_MISSING = f"the compiled resampler kernel is not available ({exc})"
else:
    _KERNEL_MISSING = ""

log = logging.getLogger(__name__)

PASS_EDGE = 0.425  # passband edge as a fraction of the lower rate
STOP_EDGE_DECIMATE = 0.5  # stopband edge when going down (Nyquist of the output)
STOP_EDGE_INTERPOLATE = 0.575  # stopband edge when going up (mirror of the passband edge)
STOP_REJECTION_DB = 60.0
PASS_RIPPLE_DB = 0.2
TAPS_PER_INVERSE_WIDTH = 2.6  # taps ≈ this / (transition width / fs) for the spec above
MAX_FACTOR = 64  # largest reduced up/down factor we design a filter for
MAX_PLANS = 32  # chunk shapes remembered per resampler; steady 20 ms frames need 1–3
SOXR_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
KERNEL_ENV = "AGENTPLATFORM_RESAMPLER"  # numpy | compiled | auto (the default)
KERNELS = ("compiled", "numpy")
_logged_kernel: str | None = None


def compiled_kernel_available() -> bool:
    """Whether the C kernel was built and imports (the install had a compiler)."""
    return _polyphase is not None


def select_kernel(requested: str | None = None) -> str:
    """The FIR path a new ``PolyphaseResampler`` runs on: ``"compiled"`` or ``"numpy"``.

    ``requested`` (else ``AGENTPLATFORM_RESAMPLER``, else ``auto``) picks it: ``auto`` is
    the compiled kernel when it was built, else NumPy; ``compiled`` without the kernel
    is an error rather than a silent slow path. The first choice (and any later change)
    is logged, so a server's start-up log says which path its calls use.
    """
    global _logged_kernel
    choice = (requested or os.environ.get(KERNEL_ENV, "") or "auto").strip().lower()
    if choice not in ("auto", *KERNELS):
        raise ValueError(f"{KERNEL_ENV} must be auto, compiled or numpy, got {choice!r}")
    if choice == "compiled" and _polyphase is None:
        raise RuntimeError(f"{KERNEL_ENV}=compiled, but {_KERNEL_MISSING}")
    kernel = "numpy" if choice == "numpy" or _polyphase is None else "compiled"
    if kernel != _logged_kernel:
        _logged_kernel = kernel
        if kernel == "compiled":
            log.info("resampler: compiled polyphase kernel")
        elif choice == "numpy":
            log.info("resampler: NumPy polyphase path (%s=numpy)", KERNEL_ENV)
        else:
            log.warning("resampler: NumPy polyphase path, %s; reinstall with a C compiler "
                        "for the faster one", _KERNEL_MISSING)
    return kernel


class Resampler(Protocol):
    """A per-call, per-direction converter between two PCM16 mono sample rates."""

    in_rate: int
    out_rate: int

    def process(self, pcm: bytes) -> bytes:
        """Convert the next chunk; output length follows the input, chunk by chunk."""
        ...

    def reset(self) -> None:
        """Forget the history, as if the stream started again (e.g. after barge-in)."""
        ...


class IdentityResampler:
    """Same rate both sides: returns each chunk as it came (after checking it)."""

    def __init__(self, rate: int) -> None:
        check_rate(rate)
        self.in_rate = rate
        self.out_rate = rate

    def process(self, pcm: bytes) -> bytes:
        check_pcm16(pcm)
        return pcm

    def reset(self) -> None:
        return None


def _magnitude_ok(taps: np.ndarray, fs: float, pass_hz: float, stop_hz: float) -> bool:
    freqs, response = signal.freqz(taps, worN=8192, fs=fs)
    mag_db = 20.0 * np.log10(np.abs(response) + 1e-12)
    passband = mag_db[freqs <= pass_hz]
    stopband = mag_db[freqs >= stop_hz]
    ripple = float(passband.max() - passband.min())
    return ripple <= PASS_RIPPLE_DB and float(stopband.max()) <= -STOP_REJECTION_DB


@lru_cache(maxsize=32)
def design_lowpass(fs: float, pass_hz: float, stop_hz: float) -> np.ndarray:
    """Shortest minimum-phase lowpass at ``fs`` meeting the module's ripple and rejection.

    Grows the length from a calibrated start until the converted (minimum-phase)
    response meets the spec. Cached per rate pair: only the first resampler for a
    pair in a process pays the design time (see ``warm_up``).
    """
    # Odd length (a type I prototype, as the homomorphic method wants). The start is
    # calibrated so that the first or second candidate passes for the designs we use.
    width = (stop_hz - pass_hz) / fs
    numtaps = int(TAPS_PER_INVERSE_WIDTH / width) | 1
    for _ in range(200):
        prototype = signal.remez(
            numtaps, [0.0, pass_hz, stop_hz, fs / 2.0], [1.0, 0.0], weight=[1.0, 10.0], fs=fs
        )
        taps = signal.minimum_phase(prototype, method="homomorphic", half=False)
        if _magnitude_ok(taps, fs, pass_hz, stop_hz):
            taps = taps / taps.sum()  # exact unity gain at DC
            taps.setflags(write=False)
            return taps
        numtaps += 2
    raise ValueError(f"no lowpass meets the spec at fs={fs} pass={pass_hz} stop={stop_hz}")


@dataclass(slots=True)
class _Group:
    """Outputs j, j+L, j+2L… of a chunk: one filter branch, inputs M apart."""

    rows: np.ndarray  # strided view: the input window of each output in the group
    scratch: np.ndarray  # contiguous copy of ``rows``, so the product runs in BLAS
    branch: np.ndarray
    out: np.ndarray  # where this group's outputs land in the chunk's output


@dataclass(slots=True)
class _Plan:
    """Everything one chunk shape needs, built once and reused on every 20 ms frame."""

    groups: tuple[_Group, ...]
    total: int
    out: np.ndarray
    pcm: np.ndarray
    key: tuple[int, int, int]  # (chunk samples, lead, phase) this plan was built for
    fresh: np.ndarray  # where the chunk's samples go in the input buffer
    keep_from: np.ndarray | None  # the newest history, moved to the front afterwards
    keep_to: np.ndarray | None


class PolyphaseResampler:
    """Streaming rational resampler (up by L, lowpass, down by M) with no look-ahead.

    Output sample k sits at position k·M on the L·in_rate grid; it is the dot product
    of one polyphase branch of the filter with the most recent input samples. The
    only state is the input history and where the next output falls relative to the
    next input chunk, so one instance serves one direction of one call.

    ``kernel`` (``"compiled"``, ``"numpy"``; default: see ``select_kernel``) picks the
    path that runs the FIR; both give the same output.
    """

    def __init__(self, in_rate: int, out_rate: int, kernel: str | None = None) -> None:
        check_rate(in_rate)
        check_rate(out_rate)
        if in_rate == out_rate:
            raise ValueError("equal rates need no resampler; use IdentityResampler")
        g = math.gcd(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.up = out_rate // g
        self.down = in_rate // g
        if self.up > MAX_FACTOR or self.down > MAX_FACTOR:
            raise ValueError(
                f"{in_rate}→{out_rate} Hz reduces to ×{self.up}/{self.down}; "
                "too costly to stream, use SoxrResampler"
            )
        fs_lo = min(in_rate, out_rate)
        stop = STOP_EDGE_DECIMATE if out_rate < in_rate else STOP_EDGE_INTERPOLATE
        self.taps = design_lowpass(float(in_rate * self.up), PASS_EDGE * fs_lo, stop * fs_lo)
        self.taps_per_phase = -(-len(self.taps) // self.up)
        padded = np.zeros(self.taps_per_phase * self.up)
        padded[: len(self.taps)] = self.taps * self.up  # zero-stuffing divides the level by L
        # Branch p holds taps p, p+L, p+2L…; reversed so the newest sample is last.
        self._branches = np.ascontiguousarray(
            padded.reshape(self.taps_per_phase, self.up).T[:, ::-1]
        )
        self.kernel = select_kernel(kernel)
        self._plans: dict[tuple[int, int, int], _Plan] = {}
        # The plan of the previous chunk: steady 20 ms frames reuse it without a lookup.
        self._last: _Plan | None = None
        if self.kernel == "compiled":
            # The kernel holds the history and the phase; the NumPy state stays unused.
            self._kernel = _polyphase.Kernel(self._branches, self.up, self.down)
            self._hist_len = 0
            self._buf = np.zeros(0)
        else:
            self._kernel = None
            self._branches_t = np.ascontiguousarray(self._branches.T)
            self._hist_len = self.taps_per_phase - 1
            self._buf = np.zeros(self._hist_len)
        self.reset()

    @property
    def delay_samples(self) -> float:
        """Group delay at 1 kHz, in output samples (for reports and benchmarks)."""
        fs = float(self.in_rate * self.up)
        _, delay = signal.group_delay((self.taps, 1.0), w=[1000.0], fs=fs)
        return float(delay[0]) * self.out_rate / fs

    def reset(self) -> None:
        if self._kernel is not None:
            self._kernel.reset()
            return
        self._buf[: self._hist_len] = 0.0
        self._lead = 0  # input index (within the next chunk) of the next output's newest sample
        self._phase = 0  # branch of the next output: (k·M) mod L

    def _plan(self, n: int) -> _Plan:
        key = (n, self._lead, self._phase)
        plan = self._last
        if plan is not None and plan.key == key:
            return plan
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:  # a sender with ever-changing chunk sizes
                self._plans.clear()
            plan = self._build_plan(n)
            self._plans[key] = plan
        self._last = plan
        return plan

    def _build_plan(self, n: int) -> _Plan:
        """Group a chunk's outputs by branch and give each group its scratch space.

        Outputs j, j+L, j+2L… share a branch and advance M input samples apart, so each
        group is one matrix-vector product over windows of the input buffer.
        """
        if len(self._buf) < self._hist_len + n:
            grown = np.zeros(self._hist_len + n)
            grown[: self._hist_len] = self._buf[: self._hist_len]
            self._buf = grown
            self._plans.clear()  # their views point into the old buffer
            self._last = None
        item = self._buf.itemsize
        windows = as_strided(
            self._buf, shape=(n, self.taps_per_phase), strides=(item, item), writeable=False
        )
        spans = []
        for first in range(self.up):
            offset = self._phase + first * self.down
            start = self._lead + offset // self.up
            count = (n - 1 - start) // self.down + 1 if start < n else 0
            if count > 0:
                spans.append((first, offset % self.up, start, count))
        total = sum(span[3] for span in spans)
        out = np.empty(total)
        if self.down == 1:  # pure interpolation: every input makes L outputs, one product
            product = out.reshape(n, self.up)
            group = _Group(windows, np.empty(windows.shape), self._branches_t, product)
            groups: tuple[_Group, ...] = (group,)
        else:
            groups = tuple(
                _Group(
                    windows[start : start + count * self.down : self.down],
                    np.empty((count, self.taps_per_phase)),
                    self._branches[branch],
                    out[first :: self.up],
                )
                for first, branch, start, count in spans
            )
        hist = self._hist_len
        return _Plan(groups, total, out, np.empty(total, dtype="<i2"),
                     key=(n, self._lead, self._phase), fresh=self._buf[hist : hist + n],
                     keep_from=self._buf[n : n + hist] if hist else None,
                     keep_to=self._buf[:hist] if hist else None)

    def process(self, pcm: bytes) -> bytes:
        if self._kernel is not None:  # the whole chunk in one C call (checks included)
            return self._kernel.process(pcm)
        # Every step below is one NumPy call on views prepared in the plan: at 20 ms
        # per chunk the arithmetic is a few µs, so the calls themselves are the cost.
        check_pcm16(pcm)
        n = len(pcm) // 2
        if n == 0:
            return b""
        plan = self._plan(n)
        np.copyto(plan.fresh, np.frombuffer(pcm, dtype="<i2"))
        for group in plan.groups:
            np.copyto(group.scratch, group.rows)
            np.matmul(group.scratch, group.branch, out=group.out)
        if plan.keep_to is not None:
            np.copyto(plan.keep_to, plan.keep_from)
        advanced = self._phase + plan.total * self.down
        self._lead += advanced // self.up - n
        self._phase = advanced % self.up
        np.minimum(plan.out, 32767.0, out=plan.out)  # two ufuncs cost less than np.clip
        np.maximum(plan.out, -32768.0, out=plan.out)
        np.rint(plan.out, out=plan.pcm, casting="unsafe")
        return plan.pcm.tobytes()


class SoxrResampler:
    """soxr's streaming resampler at a chosen quality, for comparison in benchmarks.

    LQ…VHQ hold back tens of milliseconds and release them in bursts; QQ is
    immediate but aliases. See the module docstring for measured figures. Its int16
    output is not bit-for-bit repeatable between streams (a step or two differs).
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        check_rate(in_rate)
        check_rate(out_rate)
        if quality not in SOXR_QUALITIES:
            raise ValueError(f"quality must be one of {SOXR_QUALITIES}, got {quality!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self.reset()

    def process(self, pcm: bytes) -> bytes:
        check_pcm16(pcm)
        return self._stream.resample_chunk(np.frombuffer(pcm, dtype="<i2")).tobytes()

    def flush(self) -> bytes:
        """Release what soxr still holds (end of stream); the stream must then be reset."""
        return self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True).tobytes()

    def reset(self) -> None:
        self._stream = soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="int16", quality=self.quality
        )


def make_resampler(in_rate: int, out_rate: int) -> Resampler:
    """The low-latency resampler for one direction of one call."""
    if in_rate == out_rate:
        return IdentityResampler(in_rate)
    return PolyphaseResampler(in_rate, out_rate)


COMMON_RATE_PAIRS: tuple[tuple[int, int], ...] = (
    (8000, 24000),
    (24000, 8000),
    (8000, 16000),
    (16000, 8000),
    (24000, 16000),
)


def warm_up(pairs: tuple[tuple[int, int], ...] = COMMON_RATE_PAIRS) -> None:
    """Design the filters for ``pairs`` now (tens of ms each) so no call start pays it.

    Meant for application start-up, before the event loop takes calls.
    """
    for in_rate, out_rate in pairs:
        PolyphaseResampler(in_rate, out_rate)
