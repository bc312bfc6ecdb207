"""The agents folder: one YAML file per agent, loaded, checked and kept fresh.

Rules this store keeps (and documents for admins):

* **The file name is the agent's name.** ``front-desk.yaml`` must say
  ``name: front-desk``; that makes names unique within a folder and lets
  ``save``/``delete`` find a file from a name. ``x.yaml`` and ``x.yml`` side
  by side are a duplicate: the one whose file name sorts first wins.
* **A bad file never stops the others.** Its issues are kept in ``problems``
  and it serves no calls; every other file still loads.
* **A disputed phone number goes to the file whose name sorts first.** The
  other file gets an error (and is not loaded); the winner gets a warning
  naming the loser. The loaded state is therefore a pure function of the
  folder's contents, identical in every process that reads it, whatever
  order the edits happened in. ``save`` refuses a number another loaded
  agent already has, so an edit through the store never unseats an agent.
* **Saving is atomic and validated first**: temp file in the same folder,
  fsync, ``os.replace``. An invalid edit raises ``AgentInvalid`` and leaves
  the file on disk byte for byte as it was.
* **refresh() is cheap**: one directory scan and a ``stat`` per file; only
  files whose (mtime, size, inode) changed are read and parsed again.
  Validation results depend on the environment too (key warnings); those
  are recomputed only when a file changes.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentplatform.agents.issues import (
    AgentInvalid,
    AgentNotFound,
    Issue,
    error,
    errors_in,
    warning,
)
from agentplatform.agents.spec import AgentSpec
from agentplatform.agents.validation import check_document, check_text
from agentplatform.agents.yamlio import line_of, load_document, read_document
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.errors import AgentError

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")
_NAME_FIELD = "name"


@dataclass(frozen=True, slots=True)
class LoadedAgent:
    """An agent that serves calls: its spec, its file, and its warnings."""

    spec: AgentSpec
    path: Path
    issues: tuple[Issue, ...] = ()  # warnings only; a file with errors is not loaded

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class _FileState:
    """One file's own check, cached until its stat stamp changes."""

    stamp: tuple[int, int, int]
    spec: AgentSpec | None
    issues: tuple[Issue, ...]
    doc: object  # round-trip document, to place cross-file issues on a line


class AgentStore:
    """Every agent in one folder, by name and by phone number."""

    def __init__(
        self, directory: Path, catalog: Catalog, settings: Settings,
        *, environ: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.catalog = catalog
        self._settings = settings
        self._environ = environ
        self._files: dict[Path, _FileState] = {}
        self.agents: dict[str, LoadedAgent] = {}
        self.problems: dict[str, list[Issue]] = {}
        self._numbers: dict[str, LoadedAgent] = {}
        self.refresh()

    # --- reading --------------------------------------------------------------------

    def get(self, name: str) -> LoadedAgent | None:
        return self.agents.get(name)

    def for_number(self, e164: str) -> LoadedAgent | None:
        """The agent that answers calls to ``e164`` (exact match), if any."""
        return self._numbers.get(e164)

    def path_for(self, name: str) -> Path | None:
        """The file holding ``name``, loaded or not (a broken file still has a path)."""
        for path in sorted(self._files):
            if path.stem == name:
                return path
        return None

    def refresh(self) -> bool:
        """Pick up added, edited and removed files; True when anything changed.

        Meant to run on every incoming call: it only stats files unless one changed.
        """
        stamps = self._scan()
        changed = stamps.keys() != self._files.keys()
        files: dict[Path, _FileState] = {}
        for path, stamp in stamps.items():
            state = self._files.get(path)
            if state is None or state.stamp != stamp:
                state = self._load_file(path, stamp)
                changed = True
            files[path] = state
        if changed:
            self._files = files
            self._assemble()
        return changed

    def _scan(self) -> dict[Path, tuple[int, int, int]]:
        stamps: dict[Path, tuple[int, int, int]] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return stamps
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(SUFFIXES):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # removed between scan and stat
            if entry.is_file():
                stamps[Path(entry.path)] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return stamps

    def _load_file(self, path: Path, stamp: tuple[int, int, int]) -> _FileState:
        try:
            doc = read_document(path)
        except AgentError as exc:
            return _FileState(stamp, None, (error(exc.file, exc.field, exc.message),), None)
        spec, issues = self._check(doc, path)
        return _FileState(stamp, spec, tuple(issues), doc)

    def _check(self, doc: object, path: Path) -> tuple[AgentSpec | None, list[Issue]]:
        file = str(path)
        spec, issues = check_document(doc, file=file, catalog=self.catalog,
                                      settings=self._settings, environ=self._environ)
        if spec is not None and spec.name != path.stem:
            mismatch = error(file, _NAME_FIELD, f"name {spec.name!r} must match the file name "
                             f"{path.stem!r} (rename one of them)")
            issues.append(mismatch.at_line(line_of(doc, _NAME_FIELD)))
        return spec, issues

    def _assemble(self) -> None:
        """Rebuild the name and number maps from the cached per-file results.

        Files are taken in name order; the first to claim a name or number keeps
        it. New dicts are assigned at the end, so a reader never sees half a state.
        """
        agents: dict[str, LoadedAgent] = {}
        numbers: dict[str, LoadedAgent] = {}
        problems: dict[str, list[Issue]] = {}
        extra: dict[Path, list[Issue]] = {}  # cross-file issues, per file
        for path in sorted(self._files):
            state = self._files[path]
            file = str(path)
            issues = list(state.issues)
            spec = state.spec
            if spec is None or errors_in(issues):
                problems[file] = issues
                continue
            conflicts = self._conflicts(spec, path, state.doc, agents, numbers, extra)
            if conflicts:
                problems[file] = issues + conflicts
                continue
            agent = LoadedAgent(spec=spec, path=path, issues=tuple(issues))
            agents[spec.name] = agent
            for number in spec.phone_numbers:
                numbers.setdefault(number, agent)
        # Winners learn about the files they beat only after those were placed.
        for agent in list(agents.values()):
            more = extra.get(agent.path)
            if more:
                agents[agent.name] = LoadedAgent(agent.spec, agent.path, agent.issues + tuple(more))
        numbers = {number: agents[agent.name] for number, agent in numbers.items()}
        self.agents, self._numbers, self.problems = agents, numbers, problems

    def _conflicts(
        self, spec: AgentSpec, path: Path, doc: object, agents: dict[str, LoadedAgent],
        numbers: dict[str, LoadedAgent], extra: dict[Path, list[Issue]],
    ) -> list[Issue]:
        file = str(path)
        found: list[Issue] = []
        owner = agents.get(spec.name)
        if owner is not None:
            found.append(error(file, _NAME_FIELD, f"agent {spec.name!r} is already defined by "
                               f"{owner.path.name}, which takes precedence").at_line(
                                   line_of(doc, _NAME_FIELD)))
            extra.setdefault(owner.path, []).append(warning(
                str(owner.path), _NAME_FIELD,
                f"{path.name} also defines agent {spec.name!r} and is not loaded").at_line(
                    line_of(self._files[owner.path].doc, _NAME_FIELD)))
        for i, number in enumerate(spec.phone_numbers):
            holder = numbers.get(number)
            if holder is None:
                continue
            field = f"phone_numbers[{i}]"
            found.append(error(file, field, f"{number} is already claimed by {holder.path.name} "
                               f"(agent {holder.name!r}); the file whose name sorts first "
                               f"keeps it").at_line(line_of(doc, field)))
            j = holder.spec.phone_numbers.index(number)
            holder_field = f"phone_numbers[{j}]"
            notice = warning(str(holder.path), holder_field,
                             f"{number} is also claimed by {path.name}, which is not loaded "
                             f"until one of them gives it up")
            extra.setdefault(holder.path, []).append(
                notice.at_line(line_of(self._files[holder.path].doc, holder_field)))
        return found

    # --- writing --------------------------------------------------------------------

    def check(self, name: str, yaml_text: str) -> tuple[AgentSpec | None, list[Issue]]:
        """Everything that would stop ``save(name, yaml_text)``, without writing."""
        if not _valid_name(name):
            return None, [error(str(self.directory), _NAME_FIELD,
                                f"{name!r} is not a valid agent name (lowercase letters, "
                                "digits, '-' or '_', starting with a letter or digit)")]
        self.refresh()
        path = self.path_for(name) or self.directory / f"{name}.yaml"
        file = str(path)
        spec, issues = check_text(yaml_text, file=file, catalog=self.catalog,
                                  settings=self._settings, environ=self._environ)
        if spec is None:
            return spec, issues
        doc = load_document(yaml_text, file=file)
        if spec.name != name:
            issues.append(error(file, _NAME_FIELD, f"name {spec.name!r} must be {name!r}, the "
                                "agent being saved").at_line(line_of(doc, _NAME_FIELD)))
        for i, number in enumerate(spec.phone_numbers):
            holder = self._numbers.get(number)
            if holder is not None and holder.name != name:
                field = f"phone_numbers[{i}]"
                issues.append(error(file, field, f"{number} already belongs to agent "
                                    f"{holder.name!r} ({holder.path.name})").at_line(
                                        line_of(doc, field)))
        return spec, issues

    def save(self, name: str, yaml_text: str) -> LoadedAgent:
        """Validate, then atomically write the agent's file; raises AgentInvalid on errors.

        The text is written as given, so the admin's comments and layout stay.
        """
        _, issues = self.check(name, yaml_text)
        if errors_in(issues):
            raise AgentInvalid(issues)
        path = self.path_for(name) or self.directory / f"{name}.yaml"
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, yaml_text.encode("utf-8"))
        self.refresh()
        agent = self.agents.get(name)
        if agent is None:  # a concurrent edit on disk got in between
            raise AgentInvalid(self.problems.get(str(path)) or [
                error(str(path), _NAME_FIELD, "saved, but the agent did not load")])
        return agent

    def delete(self, name: str) -> None:
        """Remove the agent's file (loaded or broken); raises AgentNotFound."""
        self.refresh()
        path = self.path_for(name) if _valid_name(name) else None
        if path is None:
            raise AgentNotFound(str(self.directory), name)
        path.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        self.refresh()


def _spec_name_pattern() -> re.Pattern[str]:
    for meta in AgentSpec.model_fields[_NAME_FIELD].metadata:
        pattern = getattr(meta, "pattern", None)
        if pattern:
            return re.compile(pattern)
    raise RuntimeError("AgentSpec.name lost its pattern")


_NAME_PATTERN = _spec_name_pattern()


def _valid_name(name: str) -> bool:
    """Guards paths built from a name (no '../' or separators reach the filesystem)."""
    return _NAME_PATTERN.fullmatch(name) is not None


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file beside the target, fsync, rename: readers see old or new, never half."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
