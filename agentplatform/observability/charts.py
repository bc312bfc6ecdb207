"""Small inline SVG charts for the admin screens, drawn on the server.

No JavaScript, no CDN: the page works offline and prints. Each function takes
plain numbers and returns SVG markup (``markupsafe.Markup``, every text escaped)
with a ``<title>`` per bar, so hovering shows the exact figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from agentplatform.storage.models import AgentDay, TurnPublic

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 52, 24, 10


@dataclass(frozen=True, slots=True)
class TurnBar:
    turn: int  # seq in the transcript
    latency_ms: float  # what the caller felt
    model_ms: float  # of which waiting on the model
    tool_ms: float  # of which tools
    interrupted: bool


def turn_bars(turns: Sequence[TurnPublic]) -> list[TurnBar]:
    """The answers that have a measured latency, in transcript order."""
    return [
        TurnBar(t.seq, t.latency_ms, min(t.model_ms or 0.0, t.latency_ms),
                min(t.tool_ms or 0.0, t.latency_ms), t.interrupted)
        for t in turns if t.role == "assistant" and t.latency_ms is not None
    ]


def _nice_max(value: float) -> float:
    """A round axis top at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _axis(top: float, unit: str) -> list[str]:
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    parts = []
    for i in range(5):
        value = top * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        label = f"{value:,.0f}{unit}" if unit == " ms" else f"${value:,.2f}"
        parts.append(f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}" '
                     f'stroke="#e3e6ea"/>')
        parts.append(f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="10" fill="#6b7580">{escape(label)}</text>')
    return parts


def latency_chart(turns: Sequence[TurnPublic]) -> Markup:
    """One bar per answer: total height is what the caller waited (stopped speaking →
    first audio sent); the lower part is the model's share, tools hatched inside it."""
    bars = turn_bars(turns)
    if not bars:
        return Markup("")
    top = _nice_max(max(b.latency_ms for b in bars))
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / len(bars)
    width = max(min(slot * 0.6, 48), 2)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="100%" aria-label="Response latency per answer">', *_axis(top, " ms")]
    for i, b in enumerate(bars):
        x = PAD_LEFT + slot * i + (slot - width) / 2
        base = PAD_TOP + plot_h

        def rect(ms: float, y_from_ms: float, color: str, css: str) -> str:
            h = plot_h * ms / top
            y = base - plot_h * (y_from_ms + ms) / top
            return (f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                    f'height="{h:.1f}" fill="{color}"/>')

        tip = (f"answer {b.turn}: {b.latency_ms:.0f} ms to first audio sent "
               f"(model {b.model_ms:.0f} ms, tools {b.tool_ms:.0f} ms)"
               + (", interrupted" if b.interrupted else ""))
        parts.append(f"<g><title>{escape(tip)}</title>")
        parts.append(rect(b.latency_ms - b.model_ms, b.model_ms, "#9db4d0", "bridge"))
        parts.append(rect(b.model_ms - b.tool_ms, b.tool_ms, "#3d6fa8", "model"))
        if b.tool_ms:
            parts.append(rect(b.tool_ms, 0.0, "#c47f17", "tool"))
        parts.append("</g>")
        parts.append(f'<text x="{x + width / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                     f'font-size="10" fill="#6b7580">#{b.turn}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def days_between(since: date, until: date) -> list[str]:
    return [(since + timedelta(days=i)).isoformat() for i in range((until - since).days + 1)]


def cost_charts(days: Sequence[AgentDay], since: date, until: date) -> dict[str, Markup]:
    """Per agent, one bar per day from ``since`` to ``until`` (zero where no calls)."""
    axis_days = days_between(since, until)
    by_agent: dict[str, dict[str, AgentDay]] = {}
    for d in days:
        by_agent.setdefault(d.agent, {})[d.day] = d
    charts: dict[str, Markup] = {}
    for agent, per_day in sorted(by_agent.items()):
        top = _nice_max(max(d.cost_usd for d in per_day.values()) * 100) / 100 or 0.01
        plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
        slot = plot_w / len(axis_days)
        width = max(slot * 0.7, 1)
        parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
                 f'aria-label="Daily cost of {escape(agent)}">', *_axis(top, "$")]
        for i, day in enumerate(axis_days):
            d = per_day.get(day)
            cost = d.cost_usd if d else 0.0
            h = plot_h * cost / top
            x = PAD_LEFT + slot * i + (slot - width) / 2
            calls = f"{d.calls} calls, {d.refused} refused" if d else "no calls"
            parts.append(f'<g><title>{escape(f"{day}: ${cost:.4f} ({calls})")}</title>'
                         f'<rect class="cost" x="{x:.1f}" y="{PAD_TOP + plot_h - h:.1f}" '
                         f'width="{width:.1f}" height="{h:.1f}" fill="#3d6fa8"/></g>')
            if len(axis_days) <= 16 or i % max(len(axis_days) // 8, 1) == 0:
                parts.append(f'<text x="{x + width / 2:.1f}" y="{HEIGHT - 8}" '
                             f'text-anchor="middle" font-size="10" fill="#6b7580">'
                             f'{escape(day[5:])}</text>')
        parts.append("</svg>")
        charts[agent] = Markup("".join(parts))
    return charts
