"""What ``agentplatform agents list|validate`` print: plain text, built here, printed by the CLI.

Kept free of argument parsing and printing so the CLI stays a thin shell and
these outputs are testable as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agentplatform.agents.issues import errors_in, warnings_in
from agentplatform.agents.store import AgentStore, LoadedAgent
from agentplatform.catalog import Catalog
from agentplatform.errors import CatalogError
from agentplatform.config import Settings

_COLUMNS = ("NAME", "MODEL", "VOICE", "NUMBERS", "STATUS")


def list_agents(store: AgentStore) -> str:
    """One row per agent file: loaded agents first, then files that did not load."""
    rows: list[Sequence[str]] = [_agent_row(store, a) for a in sorted(
        store.agents.values(), key=lambda a: a.name)]
    for file, issues in sorted(store.problems.items()):
        errors = errors_in(issues)
        first = errors[0] if errors else None
        status = f"error: {first.field}: {first.message}" if first else "error"
        if len(errors) > 1:
            status += f" (+{len(errors) - 1} more)"
        rows.append((Path(file).stem, "-", "-", "-", status))
    if not rows:
        return f"no agents in {store.directory}"
    return _table(_COLUMNS, rows)


def _agent_row(store: AgentStore, agent: LoadedAgent) -> Sequence[str]:
    spec = agent.spec
    voice = spec.voice
    if voice is None:
        try:
            voice = f"{store.catalog.model(spec.model).provider.default_voice} (default)"
        except CatalogError:
            voice = "-"
    warnings = len(agent.issues)
    status = f"ok, {_count(warnings, 'warning')}" if warnings else "ok"
    return (spec.name, spec.model, voice, ", ".join(spec.phone_numbers) or "-", status)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def validate_all(
    directory: Path, catalog: Catalog, settings: Settings,
    *, environ: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Check every agent file; exit code 1 on any error, 0 otherwise (warnings included)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 1, f"{directory}: no such directory"
    store = AgentStore(directory, catalog, settings, environ=environ)
    issues = [i for a in store.agents.values() for i in a.issues]
    issues += [i for file_issues in store.problems.values() for i in file_issues]
    issues.sort(key=lambda i: (i.file, i.line or 0, i.severity))
    n_errors, n_warnings = len(errors_in(issues)), len(warnings_in(issues))
    files = len(store.agents) + len(store.problems)
    summary = (f"{_count(files, 'agent file')}: {len(store.agents)} valid, "
               f"{len(store.problems)} with errors; {_count(n_errors, 'error')}, "
               f"{_count(n_warnings, 'warning')}")
    lines = [str(i) for i in issues] + [summary]
    return (1 if store.problems else 0), "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
