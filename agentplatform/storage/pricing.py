"""What a call cost, from the catalog's per-model ``prices``.

Prices are data: USD per 1M tokens under ``text_in``, ``text_cached``, ``text_out``,
``audio_in``, ``audio_cached``, ``audio_out``, and/or USD per minute of call under
``per_minute`` (xAI bills by duration, not tokens). A model prices only what it
lists; a missing rate bills nothing, except that a missing cached rate falls back
to the full input rate (no discount is the safe assumption).

Cached input. Providers report ``input_cached`` as a part of the input already
counted in ``input_text`` + ``input_audio``, so cached tokens are billed at the
cached rate and only the rest at the full rate. ``Usage`` carries one cached total,
not a text/audio split, so the total is split in proportion to the text and audio
input of the same response. When the response reports cached tokens but no input
to split them by, they are billed at ``audio_cached`` (a voice call's prompt is
mostly audio). Cached counts larger than the input are capped at the input.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentplatform.catalog import Catalog, load_catalog
from agentplatform.realtime.base import Usage

TOKENS_PER_PRICE_UNIT = 1_000_000
SECONDS_PER_MINUTE = 60.0

# A rate a model may leave out, and the rate to bill in its place.
_RATE_FALLBACK: dict[str, str] = {"text_cached": "text_in", "audio_cached": "audio_in"}


def billable_tokens(usage: Usage) -> dict[str, float]:
    """Token counts keyed by the price they are billed at."""
    input_total = usage.input_text + usage.input_audio
    if input_total > 0:
        cached = min(usage.input_cached, input_total)
        cached_text = cached * usage.input_text / input_total
        cached_audio = cached - cached_text
    else:
        cached_text, cached_audio = 0.0, float(usage.input_cached)
    return {
        "text_in": usage.input_text - cached_text,
        "text_cached": cached_text,
        "audio_in": max(usage.input_audio - cached_audio, 0.0),
        "audio_cached": cached_audio,
        "text_out": float(usage.output_text),
        "audio_out": float(usage.output_audio),
    }


def _rate(prices: Mapping[str, float], key: str) -> float:
    if key in prices:
        return prices[key]
    fallback = _RATE_FALLBACK.get(key)
    return prices.get(fallback, 0.0) if fallback else 0.0


def price_usage(
    prices: Mapping[str, float], usage: Usage, *, audio_seconds: float = 0.0
) -> float:
    """Cost in USD of ``usage`` (and ``audio_seconds`` of call) at ``prices``."""
    tokens = sum(count * _rate(prices, key) for key, count in billable_tokens(usage).items())
    per_minute = prices.get("per_minute", 0.0) * audio_seconds / SECONDS_PER_MINUTE
    return tokens / TOKENS_PER_PRICE_UNIT + per_minute


def cost_usd(
    model_id: str, usage: Usage, *, audio_seconds: float = 0.0, catalog: Catalog | None = None
) -> float:
    """Cost in USD for ``model_id`` (an id or alias from the catalog).

    Raises ``CatalogError`` for a model the catalog does not know.
    """
    model = (catalog or load_catalog()).model(model_id)
    return price_usage(model.prices, usage, audio_seconds=audio_seconds)


# What each billing kind is called on screen, in the order it is shown.
KIND_LABELS: dict[str, str] = {
    "text_in": "text input", "text_cached": "cached text input", "audio_in": "audio input",
    "audio_cached": "cached audio input", "text_out": "text output",
    "audio_out": "audio output", "per_minute": "model-session time",
}


def cost_breakdown(
    prices: Mapping[str, float], usage: Usage, *, audio_seconds: float = 0.0
) -> list[tuple[str, float, float, float]]:
    """``(kind, quantity, rate, usd)`` per billing kind with a non-zero quantity:
    tokens at USD per 1M, or seconds at USD per minute. Sums to ``price_usage``."""
    rows: list[tuple[str, float, float, float]] = []
    for kind, count in billable_tokens(usage).items():
        if count:
            rate = _rate(prices, kind)
            rows.append((kind, count, rate, count * rate / TOKENS_PER_PRICE_UNIT))
    if audio_seconds and "per_minute" in prices:
        rate = prices["per_minute"]
        rows.append(("per_minute", audio_seconds, rate, rate * audio_seconds / SECONDS_PER_MINUTE))
    order = list(KIND_LABELS)
    return sorted(rows, key=lambda row: order.index(row[0]))
