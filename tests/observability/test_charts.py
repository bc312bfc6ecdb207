"""The inline SVG charts: one bar per measured answer / per day, sized by the data."""

from __future__ import annotations

import re

import pytest
from datetime import UTC, date, datetime

from agentplatform.observability.charts import cost_charts, latency_chart, turn_bars
from agentplatform.storage.models import AgentDay, TurnPublic

T = datetime(2026, 3, 10, tzinfo=UTC)


def _turn(seq: int, role: str, latency: float | None = None, model: float | None = None,
          tool: float | None = None) -> TurnPublic:
    return TurnPublic(id=seq, call_id="c", seq=seq, role=role, text="x", latency_ms=latency,
                      model_ms=model, tool_ms=tool, created_at=T)


def _heights(svg: str, css: str) -> list[float]:
    return [float(h) for h in re.findall(rf'class="{css}"[^>]*height="([\d.]+)"', svg)]


def test_latency_chart_has_a_bar_per_measured_answer_split_into_model_and_tool_time() -> None:
    turns = [_turn(1, "assistant"),  # the greeting: nobody spoke before it, no latency
             _turn(2, "user"), _turn(3, "assistant", 800, 600, 0),
             _turn(4, "user"), _turn(5, "assistant", 1600, 1500, 1000)]
    assert [b.turn for b in turn_bars(turns)] == [3, 5]
    svg = str(latency_chart(turns))
    assert svg.startswith("<svg") and svg.count("<title>") == 2
    model, bridge, tool = _heights(svg, "model"), _heights(svg, "bridge"), _heights(svg, "tool")
    # Axis top is 2,000 ms; the plot is 146 px tall.
    px = pytest.approx  # drawn to 0.1 px
    assert model == px([600 / 2000 * 146, 500 / 2000 * 146], abs=0.05)
    assert bridge == px([200 / 2000 * 146, 100 / 2000 * 146], abs=0.05)
    assert tool == px([1000 / 2000 * 146], abs=0.05)
    assert "1600 ms to first audio sent (model 1500 ms, tools 1000 ms)" in svg


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
