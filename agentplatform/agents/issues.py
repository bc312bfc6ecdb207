"""What is wrong with an agent file, said so an admin can fix it.

An ``Issue`` always names the file and the field (a dotted path such as
``tools[1].url``), so the CLI, the web editor and the logs can point at the
exact line. Errors stop an agent from loading; warnings do not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from agentplatform.errors import AgentError

Severity = Literal["error", "warning"]

# Field used when the problem is the file as a whole (YAML syntax, not a mapping).
WHOLE_FILE = "(file)"


@dataclass(frozen=True, slots=True)
class Issue:
    severity: Severity
    file: str
    field: str
    message: str
    line: int | None = None  # 1-based line in the file, when it can be located

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def at_line(self, line: int | None) -> Issue:
        return self if line is None else replace(self, line=line)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.severity}: {self.field}: {self.message}"


def error(file: str, field: str, message: str) -> Issue:
    return Issue("error", file, field, message)


def warning(file: str, field: str, message: str) -> Issue:
    return Issue("warning", file, field, message)


def errors_in(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if i.is_error]


def warnings_in(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if not i.is_error]


def dotted(loc: Sequence[str | int]) -> str:
    """``("tools", 1, "url")`` -> ``"tools[1].url"``: the path admins read in messages."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_dotted(path: str) -> list[str | int]:
    """Inverse of :func:`dotted`, for locating a field's line in the YAML document."""
    parts: list[str | int] = []
    for key, index in _PART.findall(path):
        parts.append(int(index) if index else key)
    return parts


class AgentInvalid(AgentError):
    """An agent file (or an edit to one) has errors; ``issues`` holds all of them.

    The first error fills AgentError's file/field/message so a generic handler
    still prints something precise.
    """

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        first = next((i for i in self.issues if i.is_error), None)
        if first is None:
            raise ValueError("AgentInvalid needs at least one error")
        super().__init__(first.file, first.field, first.message)

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


class AgentNotFound(AgentError):
    """No agent file by that name in the store."""

    def __init__(self, directory: str, name: str) -> None:
        super().__init__(directory, "name", f"no agent named {name!r}")
