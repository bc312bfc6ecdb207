"""Prometheus metrics for ``/metrics``, in the application's own registry.

Each ``create_app`` builds its own ``PlatformMetrics`` with its own
``CollectorRegistry`` (not prometheus-client's global one), so two apps in one
process — tests, the in-process call runner — never share or clash over series.

The audio path pays almost nothing: a frame's time in the bridge goes into a
``FrameHistogram`` — a bucket search and two additions on plain numbers, no lock
(only the event loop writes it), bound once per direction — which is turned into
the Prometheus histogram at scrape time. Values that already live elsewhere (calls
in progress, the writer's queue) are read at scrape time by a collector instead of
being pushed on every change.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

# Seconds. Turn latency is what a caller feels (hundreds of ms to seconds); frame
# latency is time spent inside the bridge per 20 ms frame (well under a ms).
TURN_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
FRAME_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)


class FrameHistogram:
    """A histogram for the audio path: ``observe`` counts a value into its bucket and
    adds it to the sum, on plain numbers and without a lock (one event loop writes
    it; a scrape on another thread reads a count at most a frame old). Exported as a
    Prometheus histogram by ``_FrameSeries`` at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # ``le`` buckets: a value equal to a bound counts in that bound's bucket.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound, as the exposition wants them."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


class _FrameSeries(Collector):
    def __init__(self, by_direction: dict[str, FrameHistogram]) -> None:
        self._by_direction = by_direction

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily("agentplatform_bridge_frame_seconds",
                                       "Time a 20 ms audio frame spends inside the bridge.",
                                       labels=["direction"])
        for direction, histogram in self._by_direction.items():
            family.add_metric([direction], histogram.buckets(), histogram.sum)
        yield family


@dataclass(frozen=True, slots=True)
class Gauges:
    """Live values read at scrape time."""

    active_calls: Callable[[], float]
    draining: Callable[[], float] = lambda: 0.0
    # (waiting, retries, shed, failed) of the call-record writer.
    writer: Callable[[], tuple[int, int, int, int]] = lambda: (0, 0, 0, 0)


class _LiveGauges(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("agentplatform_active_calls", "Calls in progress in this process.",
                                value=self._gauges.active_calls())
        waiting, retries, shed, failed = self._gauges.writer()
        yield GaugeMetricFamily("agentplatform_call_writer_queue",
                                "Call-record writes waiting for the database.", value=waiting)
        yield CounterMetricFamily("agentplatform_call_writer_retries",
                                  "Call-record write attempts retried while the database was "
                                  "unreachable.", value=retries)
        yield CounterMetricFamily("agentplatform_call_writer_shed",
                                  "Call-record writes shed because the queue was over its bound.",
                                  value=shed)
        yield CounterMetricFamily("agentplatform_call_writer_failed",
                                  "Call-record writes that failed on their own and were lost.",
                                  value=failed)
        yield GaugeMetricFamily("agentplatform_draining",
                                "1 while the server refuses new calls before shutting down.",
                                value=self._gauges.draining())


class PlatformMetrics:
    """Every series the platform exports. Counters and histograms are updated by
    the code that sees the event; gauges are read from ``gauges`` when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_started = Counter("agentplatform_calls_started", "Calls bridged to a model.",
                                     registry=r)
        self.calls_ended = Counter("agentplatform_calls_ended", "Calls ended, by end reason.",
                                   ["reason"], registry=r)
        self.calls_refused = Counter(
            "agentplatform_calls_refused",
            "Calls refused before a model session opened (busy, over_budget, caller_limit, "
            "draining).", ["reason"], registry=r)
        self.turn_latency = Histogram(
            "agentplatform_turn_latency_seconds",
            "Caller stopped speaking to the first answer audio sent to the carrier.",
            buckets=TURN_BUCKETS, registry=r)
        self.model_first_audio = Histogram(
            "agentplatform_model_first_audio_seconds",
            "Caller stopped speaking to the first answer audio received from the model.",
            buckets=TURN_BUCKETS, registry=r)
        self.tool_seconds = Histogram("agentplatform_tool_seconds", "Tool call duration.",
                                      ["tool"], buckets=TURN_BUCKETS, registry=r)
        # Bound once per direction: the per-frame cost is one ``observe``, no lock.
        self.frame_inbound = FrameHistogram(FRAME_BUCKETS)
        self.frame_outbound = FrameHistogram(FRAME_BUCKETS)
        r.register(_FrameSeries({"inbound": self.frame_inbound,
                                 "outbound": self.frame_outbound}))
        self.interruptions = Counter("agentplatform_interruptions",
                                     "Times a caller talked over the agent (barge-in).",
                                     registry=r)
        self.provider_errors = Counter("agentplatform_provider_errors",
                                       "Errors reported by, or connecting to, model providers.",
                                       ["provider", "fatal"], registry=r)
        self.provider_reconnects = Counter(
            "agentplatform_provider_reconnects",
            "Model sessions reconnected, resumed or recycled mid-call.", ["provider", "kind"],
            registry=r)
        self.malformed_carrier_messages = Counter(
            "agentplatform_malformed_carrier_messages",
            "Carrier messages skipped as malformed, by kind.", ["carrier", "kind"], registry=r)
        self.cost = Counter("agentplatform_cost_usd", "Model cost in USD, as priced from the catalog.",
                            ["model"], registry=r)
        self.limit_check_errors = Counter(
            "agentplatform_limit_check_errors",
            "Spend-control checks that failed (the call was let through).", registry=r)
        self._watching = False

    def watch(self, gauges: Gauges) -> None:
        """Export ``gauges``, read at every scrape (once per registry)."""
        if self._watching:
            raise RuntimeError("PlatformMetrics already watches a set of gauges")
        self.registry.register(_LiveGauges(gauges))
        self._watching = True

    def exposition(self) -> bytes:
        """The text format for a scrape."""
        return generate_latest(self.registry)
