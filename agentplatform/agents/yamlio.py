"""Agent YAML in and out, in ruamel's round-trip mode.

Round-trip mode keeps comments, key order and quoting, so an edit made by the
web screen or the CLI changes only the fields it touches and the admin's notes
survive. Syntax errors become ``AgentError`` with the line and column, and any
field path can be traced back to its line for messages.

Every load goes through the limits of ``yamllimits`` (file size, nesting, alias
expansion), so no caller can build values from a file that would explode.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from agentplatform.agents.issues import WHOLE_FILE, parse_dotted
from agentplatform.agents.yamllimits import MAX_FILE_BYTES, LimitedComposer
from agentplatform.errors import AgentError

class _Remove:
    """Marks a key to delete in :func:`set_fields`; stays itself when pickled to the
    agent-file worker process (identity is what ``set_fields`` checks)."""

    def __reduce__(self) -> str:
        return "REMOVE"

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE = _Remove()


def _yaml() -> YAML:
    """A fresh round-trip loader/dumper (YAML objects keep state; never share one)."""
    yaml = YAML(typ="rt")
    yaml.Composer = LimitedComposer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long prompt line the admin wrote
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_document(text: str, *, file: str) -> Any:
    """Parse YAML text, keeping comments; syntax errors and files over the size,
    nesting or alias limits name the line and column."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise AgentError(file, WHOLE_FILE, f"the file is {size // 1024} KiB; an agent file "
                         f"may be at most {MAX_FILE_BYTES // 1024} KiB")
    try:
        return _yaml().load(text)
    except RecursionError:
        raise AgentError(file, WHOLE_FILE, "nested too deeply to read") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            what = f"{exc.problem} ({exc.context})"
        raise AgentError(file, WHOLE_FILE, f"{where}{what}") from None
    except YAMLError as exc:
        raise AgentError(file, WHOLE_FILE, f"invalid YAML: {exc}") from None


def read_document(path: Path, *, file: str | None = None) -> Any:
    """Read and parse one agent file; unreadable or non-UTF-8 files become AgentError."""
    name = file or str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # never more than the limit into memory
        if len(data) > MAX_FILE_BYTES:
            raise AgentError(name, WHOLE_FILE, f"the file is larger than "
                             f"{MAX_FILE_BYTES // 1024} KiB, the most an agent file may be")
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentError(name, WHOLE_FILE, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise AgentError(name, WHOLE_FILE, f"cannot read: {exc.strerror}") from None
    return load_document(text, file=name)


def dump_document(doc: Any) -> str:
    """Write a (possibly edited) round-trip document back to text, comments included."""
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def to_plain(node: Any) -> Any:
    """ruamel's comment-carrying containers and scalars -> plain dict/list/str/int/...

    Validation and the spec see ordinary Python values; ruamel's subclasses
    (and their hidden comment state) stay in the round-trip document only.
    """
    if isinstance(node, Mapping):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node  # e.g. YAML timestamps; validation reports them where JSON is required


def line_of(doc: Any, field: str) -> int | None:
    """1-based line of a dotted field path (``tools[1].url``) in a round-trip document.

    Walks as deep as the path exists, so an error about a missing key points at
    its parent; returns None when nothing of the path is in the document.
    """
    line: int | None = None
    node = doc
    for part in parse_dotted(field):
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def set_fields(text: str, changes: Mapping[str, Any], *, file: str) -> str:
    """Apply ``{dotted.path: value}`` edits to YAML text, keeping every comment.

    Intermediate mappings are created when missing; a value of ``REMOVE``
    deletes the key. Used by editors that change one field of an agent.
    """
    doc = load_document(text, file=file)
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise AgentError(file, WHOLE_FILE, "an agent file must be a mapping of fields")
    for path, value in changes.items():
        parts = parse_dotted(path)
        if not parts:
            raise AgentError(file, path, "empty field path")
        parent = doc
        for part in parts[:-1]:
            if isinstance(parent, CommentedMap) and isinstance(part, str):
                parent = parent.setdefault(part, CommentedMap())
            elif isinstance(parent, CommentedSeq) and isinstance(part, int) and part < len(parent):
                parent = parent[part]
            else:
                raise AgentError(file, path, f"cannot descend into {part!r}")
        last = parts[-1]
        if value is REMOVE:
            if isinstance(parent, (CommentedMap, CommentedSeq)):
                try:
                    del parent[last]
                except (KeyError, IndexError, TypeError):
                    pass
            continue
        try:
            parent[last] = value
        except (IndexError, TypeError):
            raise AgentError(file, path, f"cannot set {last!r} here") from None
    return dump_document(doc)
