"""The scenario file: what the caller does, turn by turn, and what must be true after.

A scenario is YAML beside the agents (``scenarios/*.yaml``). Its shape is checked
strictly, the way agent files are: an unknown field, a turn with two actions, an
assertion with no criterion is an error naming the file, the dotted field
(``turns[0].expect[1].tool_called.name``) and its line, and the whole run stops with
exit code 2 before any call is placed.

    name: pain-gets-a-person
    agent: front-desk
    turns:
      - say: "Hi, I have a terrible toothache."
        expect:
          - tool_called: {name: transfer_call}
    expect:
      - says: {not_contains: "ibuprofen"}
      - latency: {p50_ms_max: 1200}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentplatform.agents.issues import WHOLE_FILE, Issue, dotted, error
from agentplatform.agents.yamlio import line_of, read_document, to_plain
from agentplatform.errors import AgentError

SUFFIXES = (".yaml", ".yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- assertions


class Says(_Strict):
    """On what the agent said (numbers normalised: "eight" and "8" match)."""

    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_criterion(self) -> Says:
        if self.contains is None and self.not_contains is None and self.regex is None:
            raise ValueError("give contains, not_contains or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return self


class ToolCalled(_Strict):
    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)  # a subset of the call's arguments


class ToolNotCalled(_Strict):
    name: str = Field(min_length=1)


class Latency(_Strict):
    """Bounds on the record's per-turn latency (``latency_ms``), in ms."""

    p50_ms_max: float | None = Field(default=None, gt=0)
    p95_ms_max: float | None = Field(default=None, gt=0)
    max_ms: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_bound(self) -> Latency:
        if self.p50_ms_max is None and self.p95_ms_max is None and self.max_ms is None:
            raise ValueError("give p50_ms_max, p95_ms_max or max_ms")
        return self


class Interrupted(_Strict):
    """The caller talked over the agent (call mode: ``barge_in``)."""

    stopped_within_ms: float | None = Field(default=None, gt=0)
    truncated: bool | None = None


EndedBy = Literal["agent", "caller", "transfer"]


class Assertion(_Strict):
    """One criterion: exactly one of the fields is set."""

    says: Says | None = None
    tool_called: ToolCalled | None = None
    tool_not_called: ToolNotCalled | None = None
    ended_by: EndedBy | None = None
    latency: Latency | None = None
    cost_usd_max: float | None = Field(default=None, ge=0)
    interrupted: Interrupted | None = None
    judge: str | None = Field(default=None, min_length=3)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # ``tool_not_called: transfer_call`` reads as well as the mapping form.
        if isinstance(data, Mapping):
            data = dict(data)
            for key in ("tool_called", "tool_not_called"):
                if isinstance(data.get(key), str):
                    data[key] = {"name": data[key]}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Assertion:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            kinds = ", ".join(type(self).model_fields)
            raise ValueError(f"each assertion is one of: {kinds}; got "
                             f"{', '.join(given) or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def value(self) -> Any:
        return getattr(self, self.kind)

    def describe(self) -> str:
        value = self.value
        if isinstance(value, BaseModel):
            shown = ", ".join(f"{k}: {v!r}" for k, v in value.model_dump(exclude_none=True).items()
                              if v != {})
            return f"{self.kind} {{{shown}}}"
        return f"{self.kind}: {value!r}"


# ---------------------------------------------------------------- turns


class BargeIn(_Strict):
    after_ms: float = Field(gt=0)  # this far into the agent's answer, start speaking


class Turn(_Strict):
    """One thing the caller does: exactly one of say, audio, dtmf, silence_ms."""

    say: str | None = Field(default=None, min_length=1)
    audio: str | None = Field(default=None, min_length=1)  # a WAV, relative to the file
    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#A-Da-d]+$")
    silence_ms: int | None = Field(default=None, gt=0, le=60_000)
    barge_in: BargeIn | None = None
    expect: list[Assertion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_action(self) -> Turn:
        given = [k for k in ("say", "audio", "dtmf", "silence_ms") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each turn does one of: say, audio, dtmf, silence_ms; got "
                             f"{', '.join(given) or 'none'}")
        if self.barge_in is not None and given[0] not in ("say", "audio"):
            raise ValueError("barge_in goes with say or audio (the caller talks over the agent)")
        return self

    @property
    def action(self) -> str:
        return next(k for k in ("say", "audio", "dtmf", "silence_ms") if getattr(self, k) is not None)

    def label(self) -> str:
        if self.say is not None:
            return f"say {self.say!r}"
        if self.audio is not None:
            return f"audio {self.audio}"
        if self.dtmf is not None:
            return f"dtmf {self.dtmf}"
        return f"silence {self.silence_ms} ms"


# ---------------------------------------------------------------- mocks


class Mock(_Strict):
    """A webhook tool's answer: when ``tool`` is called with ``args`` (a subset of the
    call's arguments), it returns ``returns`` (JSON), as the real service would."""

    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    returns: Any = None
    status: int = Field(default=200, ge=200, le=599)  # an error status tests the failure path


class SimulatedReply(_Strict):
    text: str = Field(min_length=1)


class SimulatedToolRule(_Strict):
    contains: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class SimulatedModel(_Strict):
    """The bundled realtime simulator's script, used only with ``--simulated-model``:
    it is not a language model, so a scenario that runs on it says what it answers."""

    replies: list[SimulatedReply] = Field(default_factory=list)
    tool_rules: list[SimulatedToolRule] = Field(default_factory=list)


# ---------------------------------------------------------------- the scenario


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")
    agent: str = Field(min_length=1, max_length=64)
    description: str = ""
    turns: list[Turn] = Field(min_length=1, max_length=50)
    expect: list[Assertion] = Field(default_factory=list)
    mocks: list[Mock] = Field(default_factory=list)
    simulated_model: SimulatedModel | None = None
    # Set by the loader, not by the file.
    path: str = Field(default="", exclude=True)

    def assertions(self) -> Iterable[tuple[int | None, Assertion]]:
        """Every assertion with its turn index (None: about the whole conversation)."""
        for index, turn in enumerate(self.turns):
            for assertion in turn.expect:
                yield index, assertion
        for assertion in self.expect:
            yield None, assertion


class ScenarioInvalid(Exception):
    """One or more files are malformed; ``issues`` names each file and field."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _issue(err: Mapping[str, Any], file: str) -> Issue:
    # Pydantic reports the failing union member as part of the path; drop it.
    loc = [part for part in err["loc"] if not (isinstance(part, str) and part[:1].isupper())]
    kind = err["type"]
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
    elif kind in ("dict_type", "model_type"):
        message = f"must be a mapping (key: value), got {_kind(err.get('input'))}"
    elif kind == "list_type":
        message = f"must be a list, got {_kind(err.get('input'))}"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    return error(file, dotted(loc) or WHOLE_FILE, message)


def parse_scenario(data: Any, *, file: str, doc: Any = None) -> Scenario:
    """The scenario in plain ``data``; raises ``ScenarioInvalid`` with every problem."""
    if not isinstance(data, Mapping):
        raise ScenarioInvalid([error(file, WHOLE_FILE, "a scenario file must be a mapping of "
                                     f"fields (name, agent, turns…), got {_kind(data)}")])
    if "path" in data:
        raise ScenarioInvalid([error(file, "path", "unknown field 'path'")])
    try:
        return Scenario.model_validate({**data, "path": file})
    except ValidationError as exc:
        issues: dict[tuple[str, str], Issue] = {}
        for err in exc.errors():
            issue = _issue(err, file)
            if doc is not None:
                issue = issue.at_line(line_of(doc, issue.field))
            issues.setdefault((issue.field, issue.message), issue)
        raise ScenarioInvalid(list(issues.values())) from None


def load_scenario(path: Path) -> Scenario:
    """Read and check one file; ``ScenarioInvalid`` names the file and field."""
    file = str(path)
    try:
        doc = read_document(path, file=file)
    except AgentError as exc:
        raise ScenarioInvalid([error(file, exc.field, exc.message)]) from None
    return parse_scenario(to_plain(doc), file=file, doc=doc)


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    """The files a command line names: files as given, folders searched (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise ScenarioInvalid([error(str(path), WHOLE_FILE, "no such file or folder")])
    return found


def load_all(paths: Iterable[Path]) -> list[Scenario]:
    """Every scenario under ``paths``, all checked first: one bad file stops the run
    (with the problems of every bad file), so nothing half-runs."""
    scenarios: list[Scenario] = []
    issues: list[Issue] = []
    names: dict[str, str] = {}
    for path in scenario_files(paths):
        try:
            scenario = load_scenario(path)
        except ScenarioInvalid as exc:
            issues.extend(exc.issues)
            continue
        if scenario.name in names:
            issues.append(error(str(path), "name", f"{scenario.name!r} is also the name of "
                                f"{names[scenario.name]}; each scenario needs its own"))
            continue
        names[scenario.name] = str(path)
        scenarios.append(scenario)
    if issues:
        raise ScenarioInvalid(issues)
    return scenarios
