"""The inline SVG charts: one bar per measured answer / per day, sized by the data."""

from __future__ import annotations

import re

import pytest
from datetime import UTC, date, datetime

from agentplatform.observability.charts import cost_charts, latency_chart, turn_bars
from agentplatform.storage.models import AgentDay, TurnPublic

T = datetime(2026, 3, 10, tzinfo=UTC)


def _turn(seq: int, role: str, latency: float | None = None, model: float | None = None,
          tool: float | None = None, parts: dict[str, float] | None = None) -> TurnPublic:
    return TurnPublic(id=seq, call_id="c", seq=seq, role=role, text="x", latency_ms=latency,
                      model_ms=model, tool_ms=tool, latency_parts=parts, created_at=T)


def _heights(svg: str, css: str) -> list[float]:
    return [float(h) for h in re.findall(rf'<rect class="{css}"[^>]*height="([\d.]+)"', svg)]


def test_latency_chart_stacks_each_answer_s_parts_and_labels_the_bars_turn_1_to_n() -> None:
    cascade = {"end_of_turn": 400, "stt": 150, "llm": 300, "tts": 100, "other": 50}
    turns = [_turn(1, "assistant"),  # the greeting: nobody spoke before it, no latency
             _turn(2, "user"), _turn(3, "assistant", 1000, 550, 0, cascade),
             _turn(4, "user"), _turn(5, "assistant", 1600, 1500, 1000)]  # an older record
    bars = turn_bars(turns)
    assert [(b.turn, b.seq) for b in bars] == [(1, 3), (2, 5)]
    svg = str(latency_chart(turns))
    assert svg.startswith("<svg") and svg.count("<title>") == 2
    assert re.findall(r">(turn \d+)</text>", svg) == ["turn 1", "turn 2"]
    # Axis top is 2,000 ms; the plot is 146 px tall.
    px = pytest.approx  # drawn to 0.1 px
    assert _heights(svg, "end_of_turn") == px([400 / 2000 * 146], abs=0.05)
    assert _heights(svg, "stt") == px([150 / 2000 * 146], abs=0.05)
    assert _heights(svg, "llm") == px([300 / 2000 * 146], abs=0.05)
    assert _heights(svg, "tts") == px([100 / 2000 * 146], abs=0.05)
    # The older record: the model's share, its tools, and the rest after the model.
    assert _heights(svg, "model") == px([500 / 2000 * 146], abs=0.05)
    assert _heights(svg, "tools") == px([1000 / 2000 * 146], abs=0.05)
    assert _heights(svg, "other") == px([50 / 2000 * 146, 100 / 2000 * 146], abs=0.06)
    assert "turn 1: 1000 ms to first audio sent (end-of-turn wait 400 ms, speech-to-text" in svg
    # A local agent's wait is never all "model".
    assert 'class="model"' not in svg.split('data-turn="2"')[0]


def test_no_measured_answer_draws_nothing() -> None:
    assert str(latency_chart([_turn(1, "assistant")])) == ""


def test_cost_chart_has_one_bar_per_day_zero_filled_and_escapes_names() -> None:
    days = [AgentDay(agent="<desk>", day="2026-03-09", calls=2, refused=1, cost_usd=0.5,
                     audio_seconds=60, input_tokens=0, output_tokens=0),
            AgentDay(agent="<desk>", day="2026-03-11", calls=1, refused=0, cost_usd=1.0,
                     audio_seconds=30, input_tokens=0, output_tokens=0)]
    charts = cost_charts(days, date(2026, 3, 9), date(2026, 3, 11))
    svg = str(charts["<desk>"])
    assert "<desk>" not in svg and "&lt;desk&gt;" in svg
    assert _heights(svg, "cost") == pytest.approx([0.5 * 146, 0.0, 146.0], abs=0.05)
    assert "2026-03-10: $0.0000 (no calls)" in svg
    assert "2026-03-09: $0.5000 (2 calls, 1 refused)" in svg
