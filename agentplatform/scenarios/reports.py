"""What a test run says: lines for a terminal, JUnit XML for CI, JSON for tools.

With ``--repeat N`` a scenario runs N times; ``summarise`` turns the runs into its
pass rate and the percentiles of the record's per-answer latency across every run,
which is what tells a flaky agent (or a slow one) from a broken one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.etree import ElementTree

from agentplatform.scenarios.assertions import percentile
from agentplatform.scenarios.runner import ScenarioResult


@dataclass(slots=True)
class Summary:
    scenario: str
    file: str
    via: str
    runs: int
    passed: int
    failed: int
    skipped: int
    errors: int
    pass_rate: float  # passed / runs that were not skipped (1.0 when all were skipped)
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None

    @property
    def status(self) -> str:
        if self.errors:
            return "error"
        if self.failed:
            return "failed"
        if self.passed:
            return "passed"
        return "skipped"


def summarise(runs: Sequence[ScenarioResult]) -> Summary:
    """One scenario's runs (all of the same scenario and mode) in figures."""
    first = runs[0]
    count = {s: sum(r.status == s for r in runs) for s in ("passed", "failed", "skipped", "error")}
    ran = len(runs) - count["skipped"]
    latencies = [ms for r in runs for ms in r.latencies_ms]

    def pct(q: float) -> float | None:
        return round(percentile(latencies, q), 1) if latencies else None

    return Summary(first.scenario, first.file, first.via, len(runs), count["passed"],
                   count["failed"], count["skipped"], count["error"],
                   round(count["passed"] / ran, 3) if ran else 1.0, pct(50), pct(95), pct(100))


def exit_code(summaries: Sequence[Summary]) -> int:
    """0 when every scenario passed (or was skipped), else 1."""
    return 1 if any(s.status in ("failed", "error") for s in summaries) else 0


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def console(groups: Sequence[Sequence[ScenarioResult]]) -> str:
    """The terminal report: a line per scenario, the failures' reasons under it."""
    lines: list[str] = []
    for runs in groups:
        summary = summarise(runs)
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}[
            summary.status]
        seconds = sum(r.seconds for r in runs)
        head = f"{mark:5} {summary.scenario} ({summary.file}, via {summary.via}, {seconds:.1f} s)"
        if summary.runs > 1:
            head += f": {summary.passed}/{summary.runs - summary.skipped} passed " \
                    f"({summary.pass_rate:.0%})"
        if summary.latency_p50_ms is not None and summary.latency_p95_ms is not None:
            head += f", latency p50 {_ms(summary.latency_p50_ms)} p95 " \
                    f"{_ms(summary.latency_p95_ms)}"
        lines.append(head)
        for number, run in enumerate(runs, 1):
            prefix = f"  run {number}: " if len(runs) > 1 else "  "
            if run.message:
                lines.append(f"{prefix}{run.message}")
            for item in run.failures:
                where = "conversation" if item.turn is None else f"turns[{item.turn}]"
                lines.append(f"{prefix}{where}: {item.description}: {item.message}")
            if run.status == "failed" and run.transcript:
                lines.append(f"{prefix}transcript (call {run.call_id}):")
                lines += [f"      {role:>9}: {text}" for role, text in run.transcript]
    totals = [summarise(g).status for g in groups]
    lines.append(f"{totals.count('passed')} passed, {totals.count('failed')} failed, "
                 f"{totals.count('error')} errors, {totals.count('skipped')} skipped")
    return "\n".join(lines)


def to_json(groups: Sequence[Sequence[ScenarioResult]]) -> str:
    document = {"scenarios": [
        {**asdict(summarise(runs)), "status": summarise(runs).status,
         "runs": [asdict(r) for r in runs]} for runs in groups]}
    return json.dumps(document, indent=2)


def to_junit(groups: Sequence[Sequence[ScenarioResult]]) -> str:
    """One ``<testcase>`` per scenario run, named ``scenario[via]`` (``#n`` when
    repeated); failed assertions are its ``<failure>``, skips their reason."""
    runs = [r for g in groups for r in g]
    suite = ElementTree.Element("testsuite", {
        "name": "scenarios", "tests": str(len(runs)),
        "failures": str(sum(r.status == "failed" for r in runs)),
        "errors": str(sum(r.status == "error" for r in runs)),
        "skipped": str(sum(r.status == "skipped" for r in runs)),
        "time": f"{sum(r.seconds for r in runs):.2f}"})
    for group in groups:
        for number, run in enumerate(group, 1):
            name = f"{run.scenario}[{run.via}]" + (f"#{number}" if len(group) > 1 else "")
            case = ElementTree.SubElement(suite, "testcase", {
                "classname": f"scenarios.{run.agent}", "name": name, "file": run.file,
                "time": f"{run.seconds:.2f}"})
            if run.status == "failed":
                text = "\n".join(f"{'conversation' if a.turn is None else f'turns[{a.turn}]'}: "
                                 f"{a.description}: {a.message}" for a in run.failures)
                failure = ElementTree.SubElement(case, "failure", {
                    "message": run.failures[0].message if run.failures else "failed"})
                failure.text = text
            elif run.status == "error":
                ElementTree.SubElement(case, "error", {"message": run.message})
            elif run.status == "skipped":
                ElementTree.SubElement(case, "skipped", {"message": run.message})
            out = ElementTree.SubElement(case, "system-out")
            out.text = "\n".join(f"{role}: {text}" for role, text in run.transcript)
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)


def write(path: str | Path, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")
