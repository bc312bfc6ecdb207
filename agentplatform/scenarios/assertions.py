"""Each assertion kind, checked against a call record (``record.py``).

One function per kind, found through ``CHECKS`` (data, not an if-chain). Each gets
the slice of the record it is about (a turn, or the whole conversation) and returns
an ``Outcome``: passed, failed with what the record held instead, or skipped with
why (a ``judge:`` without ``--judge``, ``interrupted`` in text mode).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from agentplatform.scenarios.record import ConversationRecord, Slice
from agentplatform.scenarios.spec import (
    Assertion,
    Interrupted,
    Latency,
    Says,
    ToolCalled,
    ToolNotCalled,
    Turn,
)

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    message: str = ""


PASS = Outcome("passed")


def fail(message: str) -> Outcome:
    return Outcome("failed", message)


def skip(message: str) -> Outcome:
    return Outcome("skipped", message)


@dataclass(slots=True)
class Context:
    """What a check may need beyond its slice."""

    record: ConversationRecord
    mode: str  # "text" or "call"
    turn: Turn | None  # the scenario turn the assertion belongs to (None: conversation)
    judge: Callable[[str, ConversationRecord], Awaitable[Outcome]] | None = None


# ---------------------------------------------------------------- text


_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "hundred": "100",
}
_WORD = re.compile(r"[a-z]+")


def normalise(text: str) -> str:
    """Lower case, number words as digits, ``1,200`` as ``1200``, spacing collapsed:
    a cascade says "eight", a model writes "8", and either should match."""
    text = text.lower().replace("’", "'")
    text = _WORD.sub(lambda m: _NUMBER_WORDS.get(m.group(0), m.group(0)), text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _shown(text: str, limit: int = 160) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_says(value: Says, part: Slice, ctx: Context) -> Outcome:
    said = normalise(part.text)
    if value.contains is not None and normalise(value.contains) not in said:
        return fail(f"the agent never said {value.contains!r}; it said {_shown(part.text)}")
    if value.not_contains is not None and normalise(value.not_contains) in said:
        return fail(f"the agent said {value.not_contains!r}: {_shown(part.text)}")
    if value.regex is not None and not re.search(value.regex, part.text, re.IGNORECASE) \
            and not re.search(value.regex, said, re.IGNORECASE):
        return fail(f"nothing the agent said matches /{value.regex}/; it said "
                    f"{_shown(part.text)}")
    return PASS


# ---------------------------------------------------------------- tools


def subset(expected: Any, actual: Any) -> bool:
    """``expected`` is contained in ``actual``: keys of mappings recursively; other
    values equal (text compared without case and surrounding space)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().lower() == actual.strip().lower()
    if isinstance(expected, (int, float)) and isinstance(actual, str):
        return str(expected) == actual.strip()
    return bool(expected == actual)


def check_tool_called(value: ToolCalled, part: Slice, ctx: Context) -> Outcome:
    named = [t for t in part.tools if t.name == value.name]
    if not named:
        called = ", ".join(t.name for t in part.tools) or "no tool"
        return fail(f"{value.name} was not called (called: {called})")
    if any(subset(value.args, t.arguments) for t in named):
        return PASS
    return fail(f"{value.name} was called, but never with {value.args}: "
                + "; ".join(str(t.arguments) for t in named))


def check_tool_not_called(value: ToolNotCalled, part: Slice, ctx: Context) -> Outcome:
    named = [t for t in part.tools if t.name == value.name]
    if named:
        return fail(f"{value.name} was called with {named[0].arguments}")
    return PASS


# ---------------------------------------------------------------- the call


def check_ended_by(value: str, part: Slice, ctx: Context) -> Outcome:
    ended = ctx.record.ended_by
    if ended != value:
        return fail(f"the conversation was ended by {ended} "
                    f"({ctx.record.call.end_reason or 'still open'})")
    return PASS


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0–100) of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def check_latency(value: Latency, part: Slice, ctx: Context) -> Outcome:
    latencies = part.latencies
    if not latencies:
        return fail("the record holds no answer latency to check")
    bounds = (("p50", 50, value.p50_ms_max), ("p95", 95, value.p95_ms_max),
              ("max", 100, value.max_ms))
    for label, q, bound in bounds:
        if bound is None:
            continue
        got = percentile(latencies, q)
        if got > bound:
            return fail(f"{label} latency {got:,.0f} ms > {bound:,.0f} ms "
                        f"(answers: {', '.join(f'{v:,.0f}' for v in latencies)} ms)")
    return PASS


def check_cost(value: float, part: Slice, ctx: Context) -> Outcome:
    cost = ctx.record.call.cost_usd or 0.0
    if cost > value:
        return fail(f"the call cost ${cost:.4f} > ${value:.4f}")
    return PASS


def check_interrupted(value: Interrupted, part: Slice, ctx: Context) -> Outcome:
    if ctx.mode != "call":
        return skip("interruptions happen on a phone line: run with --via call")
    cut = [e for e in part.events if e.kind == "barge_in"]
    if not cut:
        return fail("the agent was never interrupted (no barge_in in the record)")
    if value.truncated is not None:
        truncated = any(t.interrupted for t in part.said)
        if truncated != value.truncated:
            return fail("the agent's answer was " + ("not " if not truncated else "")
                        + "recorded as cut short")
    if value.stopped_within_ms is not None:
        after = ctx.turn.barge_in.after_ms if ctx.turn and ctx.turn.barge_in else 0.0
        heard = float(cut[0].detail.get("heard_ms", 0.0))
        kept_talking = max(0.0, heard - after)
        if kept_talking > value.stopped_within_ms:
            return fail(f"the agent kept talking {kept_talking:,.0f} ms after the caller "
                        f"started (> {value.stopped_within_ms:,.0f} ms)")
    return PASS


async def check_judge(value: str, part: Slice, ctx: Context) -> Outcome:
    if ctx.judge is None:
        return skip("judged only with --judge and a configured model")
    return await ctx.judge(value, ctx.record)


Check = Callable[[Any, Slice, Context], Outcome | Awaitable[Outcome]]

CHECKS: dict[str, Check] = {
    "says": check_says,
    "tool_called": check_tool_called,
    "tool_not_called": check_tool_not_called,
    "ended_by": check_ended_by,
    "latency": check_latency,
    "cost_usd_max": check_cost,
    "interrupted": check_interrupted,
    "judge": check_judge,
}


async def evaluate(assertion: Assertion, part: Slice, ctx: Context) -> Outcome:
    result = CHECKS[assertion.kind](assertion.value, part, ctx)
    if isinstance(result, Outcome):
        return result
    return await result
