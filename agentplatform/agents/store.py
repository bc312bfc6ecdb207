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
* **The server never parses on its event loop.** Every method has an ``_async``
  twin for code on the loop: parsing and checking run in the agent-file worker
  process (``offload``) with a time limit, and only the cheap bookkeeping runs on
  the loop. The plain methods do the same work in-process (CLI, tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentplatform.agents import offload
from agentplatform.agents.examine import NAME_FIELD, Examined, examine_file, examine_text
from agentplatform.agents.issues import (
    AgentInvalid,
    AgentNotFound,
    Issue,
    error,
    errors_in,
    warning,
)
from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Catalog
from agentplatform.config import Settings

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")
_NAME_FIELD = NAME_FIELD
Stamp = tuple[int, int, int]


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

    stamp: Stamp | None  # None: not cached (its check timed out), read again next time
    found: Examined

    @property
    def spec(self) -> AgentSpec | None:
        return self.found.spec

    @property
    def issues(self) -> tuple[Issue, ...]:
        return self.found.issues


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
        Parses in this thread: code on the event loop calls :meth:`refresh_async`.
        """
        stamps = self._scan()
        fresh = {path: self._load_file(path, stamp)
                 for path, stamp in self._changed(stamps).items()}
        return self._install(stamps, fresh)

    async def refresh_async(self) -> bool:
        """:meth:`refresh` for the event loop: changed files are parsed in the worker
        process. A file whose check times out keeps its last good state (or, if it
        had none, is listed as a problem) and is read again next time."""
        stamps = await asyncio.to_thread(self._scan)
        fresh: dict[Path, _FileState] = {}
        for path, stamp in self._changed(stamps).items():
            try:
                found = await offload.run(examine_file, path=path, catalog=self.catalog,
                                          settings=self._settings,
                                          environ=self.environ_snapshot())
            except offload.AgentWorkTimeout as exc:
                old = self._files.get(path)
                fresh[path] = _FileState(None, old.found if old is not None else Examined(
                    None, (error(exc.file, exc.field, exc.message),)))
                continue
            fresh[path] = _FileState(stamp, found)
        return self._install(stamps, fresh)

    def _changed(self, stamps: dict[Path, Stamp]) -> dict[Path, Stamp]:
        return {path: stamp for path, stamp in stamps.items()
                if (state := self._files.get(path)) is None or state.stamp != stamp}

    def _install(self, stamps: dict[Path, Stamp], fresh: dict[Path, _FileState]) -> bool:
        """Swap in the new per-file states and rebuild the maps, if anything changed."""
        if not fresh and stamps.keys() == self._files.keys():
            return False
        files = {path: fresh.get(path) or self._files.get(path) for path in stamps}
        self._files = {path: state for path, state in files.items() if state is not None}
        self._assemble()
        return True

    def environ_snapshot(self) -> dict[str, str]:
        """The environment validation reads, as plain data for the worker process."""
        return dict(os.environ if self._environ is None else self._environ)

    def _scan(self) -> dict[Path, Stamp]:
        stamps: dict[Path, Stamp] = {}
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

    def _load_file(self, path: Path, stamp: Stamp) -> _FileState:
        return _FileState(stamp, examine_file(path, catalog=self.catalog,
                                              settings=self._settings, environ=self._environ))

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
            conflicts = self._conflicts(spec, path, state.found, agents, numbers, extra)
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
        self, spec: AgentSpec, path: Path, found: Examined, agents: dict[str, LoadedAgent],
        numbers: dict[str, LoadedAgent], extra: dict[Path, list[Issue]],
    ) -> list[Issue]:
        file = str(path)
        refused: list[Issue] = []
        owner = agents.get(spec.name)
        if owner is not None:
            refused.append(error(file, _NAME_FIELD, f"agent {spec.name!r} is already defined by "
                               f"{owner.path.name}, which takes precedence").at_line(
                                   found.line(_NAME_FIELD)))
            extra.setdefault(owner.path, []).append(warning(
                str(owner.path), _NAME_FIELD,
                f"{path.name} also defines agent {spec.name!r} and is not loaded").at_line(
                    self._files[owner.path].found.line(_NAME_FIELD)))
        for i, number in enumerate(spec.phone_numbers):
            holder = numbers.get(number)
            if holder is None:
                continue
            field = f"phone_numbers[{i}]"
            refused.append(error(file, field, f"{number} is already claimed by {holder.path.name} "
                               f"(agent {holder.name!r}); the file whose name sorts first "
                               f"keeps it").at_line(found.line(field)))
            j = holder.spec.phone_numbers.index(number)
            holder_field = f"phone_numbers[{j}]"
            notice = warning(str(holder.path), holder_field,
                             f"{number} is also claimed by {path.name}, which is not loaded "
                             f"until one of them gives it up")
            extra.setdefault(holder.path, []).append(
                notice.at_line(self._files[holder.path].found.line(holder_field)))
        return refused

    # --- writing --------------------------------------------------------------------

    def check(self, name: str, yaml_text: str) -> tuple[AgentSpec | None, list[Issue]]:
        """Everything that would stop ``save(name, yaml_text)``, without writing."""
        refused = self._name_refused(name)
        if refused:
            return None, refused
        self.refresh()
        file = str(self._path_to_write(name))
        found = examine_text(yaml_text, file=file, catalog=self.catalog,
                             settings=self._settings, environ=self._environ)
        return found.spec, self._against_others(name, file, found)

    async def check_async(self, name: str, yaml_text: str) -> tuple[AgentSpec | None, list[Issue]]:
        """:meth:`check` for the event loop (parsing in the worker process)."""
        spec, issues, _ = await self._check_async(name, yaml_text)
        return spec, issues

    async def _check_async(self, name: str, yaml_text: str,
                           ) -> tuple[AgentSpec | None, list[Issue], Examined | None]:
        refused = self._name_refused(name)
        if refused:
            return None, refused, None
        await self.refresh_async()
        file = str(self._path_to_write(name))
        found = await offload.run(examine_text, yaml_text, file=file, catalog=self.catalog,
                                  settings=self._settings, environ=self.environ_snapshot())
        return found.spec, self._against_others(name, file, found), found

    def _name_refused(self, name: str) -> list[Issue]:
        if _valid_name(name):
            return []
        return [error(str(self.directory), _NAME_FIELD,
                      f"{name!r} is not a valid agent name (lowercase letters, "
                      "digits, '-' or '_', starting with a letter or digit)")]

    def _path_to_write(self, name: str) -> Path:
        return self.path_for(name) or self.directory / f"{name}.yaml"

    def _against_others(self, name: str, file: str, found: Examined) -> list[Issue]:
        """The file's own issues, plus: its name must be ``name``, its numbers its own."""
        issues = list(found.issues)
        spec = found.spec
        if spec is None:
            return issues
        if spec.name != name:
            issues.append(error(file, _NAME_FIELD, f"name {spec.name!r} must be {name!r}, the "
                                "agent being saved").at_line(found.line(_NAME_FIELD)))
        for i, number in enumerate(spec.phone_numbers):
            holder = self._numbers.get(number)
            if holder is not None and holder.name != name:
                field = f"phone_numbers[{i}]"
                issues.append(error(file, field, f"{number} already belongs to agent "
                                    f"{holder.name!r} ({holder.path.name})").at_line(
                                        found.line(field)))
        return issues

    def save(self, name: str, yaml_text: str) -> LoadedAgent:
        """Validate, then atomically write the agent's file; raises AgentInvalid on errors.

        The text is written as given, so the admin's comments and layout stay.
        """
        _, issues = self.check(name, yaml_text)
        if errors_in(issues):
            raise AgentInvalid(issues)
        path = self._path_to_write(name)
        _write_agent_file(path, yaml_text)
        self.refresh()
        return self._saved(name, path)

    async def save_async(self, name: str, yaml_text: str) -> LoadedAgent:
        """:meth:`save` for the event loop. The check's result is what gets installed
        for the new file, so the text is parsed once, in the worker process."""
        _, issues, found = await self._check_async(name, yaml_text)
        if errors_in(issues):
            raise AgentInvalid(issues)
        assert found is not None
        path = self._path_to_write(name)
        stamp = await asyncio.to_thread(_write_agent_file, path, yaml_text)
        self._files = {**self._files, path: _FileState(stamp, found)}
        self._assemble()
        await self.refresh_async()
        return self._saved(name, path)

    def _saved(self, name: str, path: Path) -> LoadedAgent:
        agent = self.agents.get(name)
        if agent is None:  # a concurrent edit on disk got in between
            raise AgentInvalid(self.problems.get(str(path)) or [
                error(str(path), _NAME_FIELD, "saved, but the agent did not load")])
        return agent

    def delete(self, name: str) -> None:
        """Remove the agent's file (loaded or broken); raises AgentNotFound."""
        self.refresh()
        _remove_agent_file(self._path_to_delete(name))
        self.refresh()

    async def delete_async(self, name: str) -> None:
        """:meth:`delete` for the event loop."""
        await self.refresh_async()
        await asyncio.to_thread(_remove_agent_file, self._path_to_delete(name))
        await self.refresh_async()

    def _path_to_delete(self, name: str) -> Path:
        path = self.path_for(name) if _valid_name(name) else None
        if path is None:
            raise AgentNotFound(str(self.directory), name)
        return path


def _write_agent_file(path: Path, text: str) -> Stamp:
    """Write atomically; the stamp ``refresh`` will see for what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, text.encode("utf-8"))
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _remove_agent_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


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
