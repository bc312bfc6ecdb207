from __future__ import annotations

import pytest

from agentplatform.catalog import load_catalog
from agentplatform.errors import CatalogError
from agentplatform.realtime.base import Usage
from agentplatform.storage.pricing import billable_tokens, cost_usd, price_usage


def test_cost_bills_cached_input_at_cached_rate_split_between_text_and_audio() -> None:
    p = load_catalog().model("openai/gpt-realtime").prices
    usage = Usage(input_text=1000, input_audio=3000, input_cached=400,
                  output_text=500, output_audio=2000)
    # 400 cached of 4000 input: a quarter is text (100), three quarters audio (300).
    expected = (
        900 * p["text_in"] + 100 * p["text_cached"]
        + 2700 * p["audio_in"] + 300 * p["audio_cached"]
        + 500 * p["text_out"] + 2000 * p["audio_out"]
    ) / 1_000_000

    assert cost_usd("openai/gpt-realtime", usage) == pytest.approx(expected)


def test_cost_differs_between_models_with_different_prices() -> None:
    usage = Usage(input_audio=10_000, output_audio=10_000)
    mini = load_catalog().model("openai/gpt-realtime-mini").prices

    assert cost_usd("openai/gpt-realtime-mini", usage) == pytest.approx(
        (10_000 * mini["audio_in"] + 10_000 * mini["audio_out"]) / 1_000_000
    )
    assert cost_usd("openai/gpt-realtime-mini", usage) < cost_usd("openai/gpt-realtime", usage)


def test_per_minute_model_bills_duration_not_tokens() -> None:
    rate = load_catalog().model("xai/grok-voice").prices["per_minute"]

    assert cost_usd("xai/grok-voice", Usage(input_audio=50_000, output_audio=50_000)) == 0
    assert cost_usd("xai/grok-voice", Usage(), audio_seconds=90) == pytest.approx(1.5 * rate)


def test_token_priced_model_ignores_call_duration() -> None:
    assert cost_usd("openai/gpt-realtime", Usage(), audio_seconds=600) == 0


def test_alias_is_priced_as_its_model() -> None:
    usage = Usage(output_audio=1234)
    assert cost_usd("xai/grok-voice-latest", usage, audio_seconds=30) == cost_usd(
        "xai/grok-voice", usage, audio_seconds=30
    )


def test_unknown_model_raises_catalog_error() -> None:
    with pytest.raises(CatalogError):
        cost_usd("nobody/nothing", Usage(input_text=1))


def test_cached_tokens_without_input_breakdown_bill_at_audio_cached() -> None:
    tokens = billable_tokens(Usage(input_cached=700))

    assert tokens["audio_cached"] == 700
    assert tokens["text_cached"] == 0
    assert price_usage({"audio_cached": 2.0, "text_cached": 9.0}, Usage(input_cached=700)) == (
        pytest.approx(700 * 2.0 / 1_000_000)
    )


def test_cached_tokens_are_capped_at_the_input_they_belong_to() -> None:
    tokens = billable_tokens(Usage(input_text=100, input_cached=250))

    assert tokens["text_cached"] == 100
    assert tokens["text_in"] == 0
    assert tokens["audio_in"] == 0


def test_missing_cached_rate_falls_back_to_full_input_rate() -> None:
    usage = Usage(input_text=1000, input_cached=1000)

    assert price_usage({"text_in": 3.0}, usage) == pytest.approx(1000 * 3.0 / 1_000_000)


def test_missing_rates_bill_nothing() -> None:
    assert price_usage({}, Usage(input_text=10, output_audio=10), audio_seconds=60) == 0


def test_breakdown_by_kind_matches_a_hand_computed_bill() -> None:
    from agentplatform.storage.pricing import cost_breakdown

    prices = {"text_in": 4.0, "text_cached": 0.40, "text_out": 16.0, "audio_in": 32.0,
              "audio_cached": 0.40, "audio_out": 64.0}
    # 1,000 text + 3,000 audio input, 2,000 of it cached (split 1:3 → 500 text, 1,500 audio),
    # 100 text and 2,000 audio output.
    usage = Usage(input_text=1000, input_audio=3000, input_cached=2000, output_text=100,
                  output_audio=2000)
    rows = {kind: (qty, usd) for kind, qty, _, usd in cost_breakdown(prices, usage)}
    assert rows["text_in"] == (500, pytest.approx(500 * 4.0 / 1e6))        # $0.002
    assert rows["text_cached"] == (500, pytest.approx(500 * 0.40 / 1e6))   # $0.0002
    assert rows["audio_in"] == (1500, pytest.approx(1500 * 32.0 / 1e6))    # $0.048
    assert rows["audio_cached"] == (1500, pytest.approx(1500 * 0.40 / 1e6))  # $0.0006
    assert rows["text_out"] == (100, pytest.approx(100 * 16.0 / 1e6))      # $0.0016
    assert rows["audio_out"] == (2000, pytest.approx(2000 * 64.0 / 1e6))   # $0.128
    total = sum(usd for _, usd in rows.values())
    assert total == pytest.approx(0.1804)
    assert total == pytest.approx(price_usage(prices, usage))


def test_breakdown_bills_model_session_time_per_minute() -> None:
    from agentplatform.storage.pricing import cost_breakdown

    # 90 s at $0.05/min is $0.075; no tokens are listed for a per-minute model.
    assert cost_breakdown({"per_minute": 0.05}, Usage(), audio_seconds=90.0) == [
        ("per_minute", 90.0, 0.05, pytest.approx(0.075))]


def test_every_catalog_model_has_dated_prices() -> None:
    from datetime import date

    # Every priced model says when its prices were checked (free local models list none).
    priced = [m for m in load_catalog().models.values() if m.prices]
    assert priced
    for model in priced:
        assert date.fromisoformat(model.prices_as_of) <= date.today(), model.id
