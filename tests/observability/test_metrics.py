"""The Prometheus exposition: parsed back with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from agentplatform.observability.metrics import Gauges, PlatformMetrics


def _samples(metrics: PlatformMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_series_the_issue_names_is_exported_with_what_was_observed() -> None:
    live = {"calls": 3}
    metrics = PlatformMetrics()
    metrics.watch(Gauges(active_calls=lambda: live["calls"], draining=lambda: 0.0,
                         writer=lambda: (7, 2, 1, 0)))
    metrics.calls_ended.labels("caller_hung_up").inc()
    metrics.calls_refused.labels("busy").inc(2)
    metrics.turn_latency.observe(0.42)
    metrics.turn_latency.observe(1.7)
    metrics.frame_inbound.observe(0.0002)
    metrics.provider_errors.labels("openai", "fatal").inc()
    metrics.provider_reconnects.labels("google", "resumed").inc()
    metrics.malformed_carrier_messages.labels("twilio", "json").inc(4)
    metrics.cost.labels("openai/gpt-realtime").inc(0.0125)

    got = _samples(metrics)
    assert got[("agentplatform_active_calls", ())] == 3
    assert got[("agentplatform_calls_ended_total", (("reason", "caller_hung_up"),))] == 1
    assert got[("agentplatform_calls_refused_total", (("reason", "busy"),))] == 2
    assert got[("agentplatform_turn_latency_seconds_count", ())] == 2
    assert got[("agentplatform_turn_latency_seconds_sum", ())] == 2.12
    assert got[("agentplatform_turn_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("agentplatform_turn_latency_seconds_bucket", (("le", "2.0"),))] == 2
    assert got[("agentplatform_bridge_frame_seconds_count", (("direction", "inbound"),))] == 1
    assert got[("agentplatform_provider_errors_total",
                (("fatal", "fatal"), ("provider", "openai")))] == 1
    assert got[("agentplatform_provider_reconnects_total",
                (("kind", "resumed"), ("provider", "google")))] == 1
    assert got[("agentplatform_malformed_carrier_messages_total",
                (("carrier", "twilio"), ("kind", "json")))] == 4
    assert got[("agentplatform_cost_usd_total", (("model", "openai/gpt-realtime"),))] == 0.0125
    assert got[("agentplatform_call_writer_queue", ())] == 7
    assert got[("agentplatform_call_writer_retries_total", ())] == 2

    live["calls"] = 1  # gauges are read at scrape time
    assert _samples(metrics)[("agentplatform_active_calls", ())] == 1


def test_two_apps_in_one_process_keep_separate_series_off_the_global_registry() -> None:
    first, second = PlatformMetrics(), PlatformMetrics()
    first.calls_started.inc()
    assert _samples(first)[("agentplatform_calls_started_total", ())] == 1
    assert _samples(second)[("agentplatform_calls_started_total", ())] == 0
    assert REGISTRY.get_sample_value("agentplatform_calls_started_total") is None


def test_frame_times_count_into_le_buckets_cumulatively_with_their_sum() -> None:
    metrics = PlatformMetrics()
    for seconds in (0.00005, 0.00005001, 0.0002, 0.07):  # on a bound, just above, between, above all
        metrics.frame_outbound.observe(seconds)
    got = _samples(metrics)
    out = ("direction", "outbound")

    def bucket(le: str) -> float:
        return got[("agentplatform_bridge_frame_seconds_bucket", (out, ("le", le)))]

    assert [bucket("5e-05"), bucket("0.0001"), bucket("0.00025"), bucket("0.05"),
            bucket("+Inf")] == [1, 2, 3, 3, 4]
    assert got[("agentplatform_bridge_frame_seconds_count", (out,))] == 4
    assert abs(got[("agentplatform_bridge_frame_seconds_sum", (out,))] - 0.07030001) < 1e-12
    assert got[("agentplatform_bridge_frame_seconds_count", (("direction", "inbound"),))] == 0
