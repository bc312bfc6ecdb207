"""Agent files over the size, nesting or alias limits are refused before any value is
built from them, with an error naming the file and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentplatform.agents import validation
from agentplatform.agents.yamlio import load_document, read_document, to_plain
from agentplatform.agents.yamllimits import MAX_DEPTH, MAX_FILE_BYTES
from agentplatform.errors import AgentError

from .yaml_bombs import alias_bomb


@pytest.fixture
def nothing_expands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail at once if validation starts turning a document into plain values."""
    real = validation.to_plain

    def refuse(node: object) -> object:  # the bomb must never be walked as a tree
        assert not (isinstance(node, dict) and node.get("name") == "bomb"), "expanded"
        return real(node)
    monkeypatch.setattr(validation, "to_plain", refuse)


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    text = alias_bomb()
    assert len(text) < 600
    with pytest.raises(AgentError) as caught:
        load_document(text, file="agents/bomb.yaml")
    assert caught.value.file == "agents/bomb.yaml"
    assert "aliases expand the file past" in caught.value.message
    assert caught.value.message.startswith("line ")


def test_check_text_reports_an_alias_bomb_as_an_error_of_the_file(
        catalog, settings, nothing_expands) -> None:
    spec, issues = validation.check_text(alias_bomb(), file="agents/bomb.yaml",
                                         catalog=catalog, settings=settings, environ={})
    assert spec is None
    [issue] = issues
    assert issue.is_error and issue.file == "agents/bomb.yaml" and issue.field == "(file)"
    assert "aliases expand" in issue.message


def test_an_alias_that_contains_itself_is_refused() -> None:
    with pytest.raises(AgentError, match="refers to a value that contains it"):
        load_document("name: x\nloop: &a [1, *a]\n", file="x.yaml")


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep = "name: x\nv: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(AgentError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_document(deep, file="x.yaml")
    very_deep = "name: x\nv: " + "[" * 50_000 + "]" * 50_000 + "\n"
    with pytest.raises(AgentError, match="nested deeper"):
        load_document(very_deep, file="x.yaml")


def test_aliases_that_nest_past_the_limit_are_refused() -> None:
    half = MAX_DEPTH // 2 + 2
    text = ("name: x\na: &a " + "[" * half + "]" * half + "\n"
            "b: " + "[" * (half - 1) + "*a" + "]" * (half - 1) + "\n")
    with pytest.raises(AgentError, match="aliases nest the file deeper"):
        load_document(text, file="x.yaml")


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\nprompt: |\n" + ("  " + "x" * 98 + "\n") * (MAX_FILE_BYTES // 100))
    with pytest.raises(AgentError, match="larger than 256 KiB") as caught:
        read_document(path)
    assert caught.value.file == str(path)
    with pytest.raises(AgentError, match="at most 256 KiB"):
        load_document(path.read_text(), file="big.yaml")


def test_ordinary_anchors_and_merge_keys_still_load() -> None:
    doc = load_document("name: x\nbase: &b {type: string}\n"
                        "props: {day: *b, time: {<<: *b, format: time}}\n", file="x.yaml")
    assert to_plain(doc)["props"] == {"day": {"type": "string"},
                                      "time": {"type": "string", "format": "time"}}
