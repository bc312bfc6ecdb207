from __future__ import annotations

from pathlib import Path

import pytest

from agentplatform.agents.yamlio import (
    REMOVE,
    dump_document,
    line_of,
    load_document,
    read_document,
    set_fields,
    to_plain,
)
from agentplatform.errors import AgentError

TEXT = """\
# Front desk agent
name: front-desk   # must match the file name
voice: marin
tools:
  - type: webhook
    name: lookup
    url: https://example.com/x   # the booking system
  - type: end_call
phone_numbers:
  - "+15555550100"
"""


def test_round_trip_dump_is_identical_to_the_input() -> None:
    assert dump_document(load_document(TEXT, file="a.yaml")) == TEXT


def test_set_fields_changes_only_the_field_and_keeps_comments() -> None:
    edited = set_fields(TEXT, {"voice": "cedar"}, file="a.yaml")
    assert edited == TEXT.replace("voice: marin", "voice: cedar")


def test_set_fields_creates_nested_mappings_and_removes_keys() -> None:
    edited = set_fields(TEXT, {"limits.max_call_seconds": 600, "voice": REMOVE}, file="a.yaml")
    data = to_plain(load_document(edited, file="a.yaml"))
    assert data["limits"] == {"max_call_seconds": 600}
    assert "voice" not in data
    assert "# the booking system" in edited


def test_set_fields_into_a_list_item() -> None:
    edited = set_fields(TEXT, {"tools[0].url": "https://example.com/y"}, file="a.yaml")
    assert "url: https://example.com/y   # the booking system" in edited


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(AgentError) as caught:
        load_document("name: a\nvoice: [marin\n", file="agents/a.yaml")
    assert caught.value.file == "agents/a.yaml"
    assert "line 3" in caught.value.message


def test_duplicate_key_is_an_error_with_its_line() -> None:
    with pytest.raises(AgentError) as caught:
        load_document("name: a\nvoice: marin\nvoice: cedar\n", file="a.yaml")
    assert "duplicate key" in caught.value.message
    assert "line 3" in caught.value.message


def test_read_document_reports_non_utf8_files(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(AgentError) as caught:
        read_document(path)
    assert caught.value.file == str(path)
    assert "UTF-8" in caught.value.message


def test_to_plain_gives_builtin_types() -> None:
    data = to_plain(load_document("a: 'x'\nb: 1.5\nc: [1, true]\nd: {e: null}\n", file="f"))
    assert data == {"a": "x", "b": 1.5, "c": [1, True], "d": {"e": None}}
    assert type(data["a"]) is str and type(data["b"]) is float
    assert type(data["c"]) is list and type(data["d"]) is dict


def test_line_of_finds_nested_fields_and_falls_back_to_the_parent() -> None:
    doc = load_document(TEXT, file="a.yaml")
    assert line_of(doc, "voice") == 3
    assert line_of(doc, "tools[0].url") == 7
    assert line_of(doc, "phone_numbers[0]") == 10
    assert line_of(doc, "tools[1].destinations") == 8  # missing key: its tool's line
    assert line_of(doc, "timezone") is None
