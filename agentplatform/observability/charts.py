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

from agentplatform.observability import turn_latency
from agentplatform.storage.models import AgentDay, TurnPublic

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 52, 24, 10


@dataclass(frozen=True, slots=True)
class TurnBar:
    turn: int  # 1, 2, 3… among the answers that have a latency
    seq: int  # seq in the transcript
    latency_ms: float  # what the caller felt
    parts: dict[str, float]  # latency_ms by where it went (turn_latency.PARTS)
    interrupted: bool

    @property
    def model_ms(self) -> float:
        """The model's share: everything between the end of the turn and its first audio
        that is not tools (the cascade's stt + llm + tts, or a speech model's wait)."""
        return sum(self.parts.get(k, 0.0) for k in ("stt", "llm", "tts", "model"))


def _parts_of(t: TurnPublic) -> dict[str, float]:
    """A turn's recorded split, or one worked out from the older columns."""
    if t.latency_parts:
        return {k: float(v) for k, v in t.latency_parts.items() if k in turn_latency.PARTS}
    latency = t.latency_ms or 0.0
    model = min(t.model_ms or 0.0, latency)
    tools = min(t.tool_ms or 0.0, model)
    return {"model": model - tools, "tools": tools, "other": latency - model}


def turn_bars(turns: Sequence[TurnPublic]) -> list[TurnBar]:
    """The answers that have a measured latency, in transcript order."""
    answered = [t for t in turns if t.role == "assistant" and t.latency_ms is not None]
    return [TurnBar(n, t.seq, float(t.latency_ms or 0.0), _parts_of(t), t.interrupted)
            for n, t in enumerate(answered, start=1)]


def parts_in(bars: Sequence[TurnBar]) -> list[tuple[str, str, str]]:
    """(part, label, colour) of every part some bar has, in stacking order: the legend."""
    seen = {k for b in bars for k, v in b.parts.items() if v > 0}
    return [(k, turn_latency.LABELS[k], turn_latency.COLORS[k])
            for k in turn_latency.PARTS if k in seen]


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
    """One bar per answer, labelled turn 1…n: its height is what the caller waited
    (stopped speaking → first answer audio sent to the line), stacked from the bottom
    in the order the time was spent (``turn_latency.PARTS``)."""
    bars = turn_bars(turns)
    if not bars:
        return Markup("")
    top = _nice_max(max(b.latency_ms for b in bars))
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / len(bars)
    width = max(min(slot * 0.6, 48), 2)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="100%" aria-label="Response latency per answer">', *_axis(top, " ms")]
    every = max(1, len(bars) // 16)  # label at most 16 bars, evenly
    for i, b in enumerate(bars):
        x = PAD_LEFT + slot * i + (slot - width) / 2
        base = PAD_TOP + plot_h
        pieces = ", ".join(f"{turn_latency.LABELS[k]} {b.parts[k]:.0f} ms"
                           for k in turn_latency.PARTS if b.parts.get(k, 0) > 0)
        tip = (f"turn {b.turn}: {b.latency_ms:.0f} ms to first audio sent ({pieces})"
               + (", interrupted" if b.interrupted else ""))
        parts.append(f'<g class="turn" data-turn="{b.turn}" data-ms="{b.latency_ms:.0f}">'
                     f"<title>{escape(tip)}</title>")
        below = 0.0
        for key in turn_latency.PARTS:
            ms = min(b.parts.get(key, 0.0), b.latency_ms - below)
            if ms <= 0:
                continue
            h = plot_h * ms / top
            y = base - plot_h * (below + ms) / top
            parts.append(f'<rect class="{key}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                         f'height="{h:.1f}" fill="{turn_latency.COLORS[key]}"/>')
            below += ms
        parts.append("</g>")
        if i % every == 0:
            parts.append(f'<text x="{x + width / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                         f'font-size="11" fill="#6b7580">turn {b.turn}</text>')
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
