"""One agent file, parsed and checked, as a picklable result.

These functions are the CPU-heavy half of the store and of the admin editor: they
run in the agent-file worker process (``offload``) when called from the server, and
in-process from the CLI. They return only plain data (the spec, the issues, and the
lines of the fields the store may need to point at), never the round-trip document,
which stays in the process that parsed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentplatform.agents.issues import Issue, error
from agentplatform.agents.spec import AgentSpec
from agentplatform.agents.validation import check_document
from agentplatform.agents.yamlio import line_of, load_document, read_document
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.errors import AgentError

NAME_FIELD = "name"
# More issues than this are summed up in one line: a page of 20,000 errors helps no one
# and costs as much to show as the file cost to check.
MAX_ISSUES = 100


@dataclass(frozen=True, slots=True)
class Examined:
    """What one file's text says: its spec (None when it does not load), its issues,
    and the line of ``name`` and of each ``phone_numbers[i]`` for cross-file messages."""

    spec: AgentSpec | None
    issues: tuple[Issue, ...]
    lines: Mapping[str, int] = field(default_factory=dict)

    def line(self, field_path: str) -> int | None:
        return self.lines.get(field_path)


def _capped(issues: list[Issue], file: str) -> list[Issue]:
    if len(issues) <= MAX_ISSUES:
        return issues
    errors = [i for i in issues if i.is_error]
    kept = (errors or issues)[:MAX_ISSUES]
    more = len(issues) - len(kept)
    return kept + [error(file, kept[-1].field, f"... and {more} more issues like these")]


def _examine_doc(doc: object, *, file: str, catalog: Catalog, settings: Settings,
                 environ: Mapping[str, str] | None) -> Examined:
    spec, issues = check_document(doc, file=file, catalog=catalog, settings=settings,
                                  environ=environ)
    lines: dict[str, int] = {}
    if spec is not None:
        fields = [NAME_FIELD, *(f"phone_numbers[{i}]" for i in range(len(spec.phone_numbers)))]
        for path in fields:
            line = line_of(doc, path)
            if line is not None:
                lines[path] = line
    return Examined(spec, tuple(_capped(issues, file)), lines)


def examine_text(text: str, *, file: str, catalog: Catalog, settings: Settings,
                 environ: Mapping[str, str] | None = None) -> Examined:
    """Everything wrong with one agent file's text (syntax and size limits included)."""
    try:
        doc = load_document(text, file=file)
    except AgentError as exc:
        return Examined(None, (error(exc.file, exc.field, exc.message),))
    return _examine_doc(doc, file=file, catalog=catalog, settings=settings, environ=environ)


def examine_file(path: Path, *, catalog: Catalog, settings: Settings,
                 environ: Mapping[str, str] | None = None) -> Examined:
    """Like :func:`examine_text` for a file on disk, plus: its name must be the file's."""
    file = str(path)
    try:
        doc = read_document(path)
    except AgentError as exc:
        return Examined(None, (error(exc.file, exc.field, exc.message),))
    found = _examine_doc(doc, file=file, catalog=catalog, settings=settings, environ=environ)
    spec = found.spec
    if spec is not None and spec.name != path.stem:
        mismatch = error(file, NAME_FIELD, f"name {spec.name!r} must match the file name "
                         f"{path.stem!r} (rename one of them)")
        return Examined(spec, (*found.issues, mismatch.at_line(found.line(NAME_FIELD))),
                        found.lines)
    return found
