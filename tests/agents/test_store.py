from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentplatform.agents import store as store_module
from agentplatform.agents.issues import AgentInvalid, AgentNotFound
from agentplatform.agents.store import AgentStore
from agentplatform.catalog import Catalog
from agentplatform.config import Settings


def agent_yaml(name: str, *numbers: str, voice: str = "marin", comment: str = "") -> str:
    lines = [f"# {comment or name}", f"name: {name}", "model: openai/gpt-realtime",
             f"voice: {voice}   # chosen by the clinic", "prompt: Help callers."]
    if numbers:
        lines.append("phone_numbers:")
        lines += [f'  - "{n}"' for n in numbers]
    return "\n".join(lines) + "\n"


def write(directory: Path, filename: str, text: str) -> Path:
    path = directory / filename
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def make_store(agents_dir: Path, catalog: Catalog, settings: Settings):
    def make() -> AgentStore:
        return AgentStore(agents_dir, catalog, settings, environ={})
    return make


# --- loading ----------------------------------------------------------------------------


def test_loads_yaml_and_yml_and_ignores_other_files(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    write(agents_dir, "b.yml", agent_yaml("b"))
    write(agents_dir, "notes.txt", "not an agent")
    write(agents_dir, ".c.yaml.tmp", "half written")
    store = make_store()
    assert sorted(store.agents) == ["a", "b"]
    assert store.problems == {}
    assert store.get("b").path == agents_dir / "b.yml"
    assert store.get("missing") is None


def test_loaded_agent_keeps_its_warnings(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    agent = make_store().get("a")
    assert [i.field for i in agent.issues] == ["model"]  # no platform key: a warning
    assert all(i.severity == "warning" for i in agent.issues)


def test_a_bad_file_does_not_stop_the_others(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a", "+15555550100"))
    broken = write(agents_dir, "b.yaml", "name: b\nvoice: [marin\n")
    wrong = write(agents_dir, "c.yaml", agent_yaml("c").replace("openai/gpt-realtime", "acme/x"))
    store = make_store()
    assert list(store.agents) == ["a"]
    assert store.for_number("+15555550100").name == "a"
    assert set(store.problems) == {str(broken), str(wrong)}
    assert store.problems[str(broken)][0].file == str(broken)
    assert "line 3" in store.problems[str(broken)][0].message
    model_issue = next(i for i in store.problems[str(wrong)] if i.is_error)
    assert (model_issue.file, model_issue.field, model_issue.line) == (str(wrong), "model", 3)


def test_name_must_match_the_file_name(agents_dir: Path, make_store) -> None:
    path = write(agents_dir, "front.yaml", agent_yaml("front-desk"))
    store = make_store()
    assert store.agents == {}
    issue = next(i for i in store.problems[str(path)] if i.is_error)
    assert issue.field == "name" and "'front'" in issue.message and issue.line == 2


def test_same_name_in_yaml_and_yml_keeps_the_first_file(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a", voice="marin"))
    dup = write(agents_dir, "a.yml", agent_yaml("a", voice="cedar"))
    store = make_store()
    assert store.get("a").spec.voice == "marin"
    assert [i.field for i in store.problems[str(dup)] if i.is_error] == ["name"]
    assert any("a.yml" in i.message for i in store.get("a").issues)


def test_missing_directory_is_an_empty_store(tmp_path: Path, catalog, settings) -> None:
    store = AgentStore(tmp_path / "nowhere", catalog, settings, environ={})
    assert store.agents == {} and store.problems == {}


# --- numbers ----------------------------------------------------------------------------


def test_duplicate_number_is_reported_on_both_files(agents_dir: Path, make_store) -> None:
    first = write(agents_dir, "a.yaml", agent_yaml("a", "+15555550100"))
    second = write(agents_dir, "b.yaml", agent_yaml("b", "+15555550101", "+15555550100"))
    store = make_store()
    # The file whose name sorts first keeps the number; the other does not load.
    assert store.for_number("+15555550100").path == first
    assert "b" not in store.agents
    assert store.for_number("+15555550101") is None
    loser = next(i for i in store.problems[str(second)] if i.is_error)
    assert loser.field == "phone_numbers[1]" and "a.yaml" in loser.message
    winner = [i for i in store.get("a").issues if i.field == "phone_numbers[0]"]
    assert len(winner) == 1 and winner[0].severity == "warning" and "b.yaml" in winner[0].message


def test_a_losing_file_does_not_block_its_other_numbers(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a", "+15555550100"))
    write(agents_dir, "b.yaml", agent_yaml("b", "+15555550100", "+15555550102"))
    write(agents_dir, "c.yaml", agent_yaml("c", "+15555550102"))
    store = make_store()
    assert store.for_number("+15555550102").name == "c"


def test_for_number_of_an_unknown_number_is_none(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a", "+15555550100"))
    assert make_store().for_number("+15555550999") is None


# --- refresh ----------------------------------------------------------------------------


def test_refresh_picks_up_an_edited_file(agents_dir: Path, make_store) -> None:
    path = write(agents_dir, "a.yaml", agent_yaml("a", voice="marin"))
    store = make_store()
    path.write_text(agent_yaml("a", "+15555550100", voice="cedar"), encoding="utf-8")
    assert store.refresh() is True
    assert store.get("a").spec.voice == "cedar"
    assert store.for_number("+15555550100").name == "a"
    assert store.refresh() is False


def test_refresh_picks_up_added_and_removed_files(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    store = make_store()
    b = write(agents_dir, "b.yaml", agent_yaml("b", "+15555550100"))
    store.refresh()
    assert store.for_number("+15555550100").name == "b"
    b.unlink()
    store.refresh()
    assert list(store.agents) == ["a"] and store.for_number("+15555550100") is None


def test_refresh_rereads_only_changed_files(agents_dir: Path, make_store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    b = write(agents_dir, "b.yaml", agent_yaml("b"))
    store = make_store()
    reads: list[Path] = []
    real = store_module.examine_file
    monkeypatch.setattr(store_module, "examine_file",
                        lambda p, **kw: reads.append(p) or real(p, **kw))
    store.refresh()
    assert reads == []
    b.write_text(agent_yaml("b", voice="cedar"), encoding="utf-8")
    store.refresh()
    assert reads == [b]


def test_an_edit_that_breaks_a_file_unloads_only_that_agent(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    b = write(agents_dir, "b.yaml", agent_yaml("b", "+15555550100"))
    store = make_store()
    b.write_text(agent_yaml("b", "+15555550100", voice="nova"), encoding="utf-8")
    store.refresh()
    assert list(store.agents) == ["a"]
    assert store.for_number("+15555550100") is None
    assert [i.field for i in store.problems[str(b)] if i.is_error] == ["voice"]


# --- save -------------------------------------------------------------------------------


def test_save_writes_the_text_as_given_with_comments(agents_dir: Path, make_store) -> None:
    store = make_store()
    text = agent_yaml("front-desk", "+15555550100", comment="Maple Street Dental front desk")
    agent = store.save("front-desk", text)
    path = agents_dir / "front-desk.yaml"
    assert agent.path == path and agent.spec.voice == "marin"
    assert path.read_text(encoding="utf-8") == text
    assert "# Maple Street Dental front desk" in path.read_text(encoding="utf-8")
    assert store.for_number("+15555550100").name == "front-desk"
    assert sorted(os.listdir(agents_dir)) == ["front-desk.yaml"]  # no temp file left


def test_save_replaces_an_existing_file_and_keeps_its_mode(agents_dir: Path, make_store) -> None:
    path = write(agents_dir, "a.yml", agent_yaml("a"))
    path.chmod(0o640)
    store = make_store()
    store.save("a", agent_yaml("a", voice="cedar"))
    assert store.get("a").spec.voice == "cedar"
    assert path.read_text(encoding="utf-8") == agent_yaml("a", voice="cedar")
    assert path.stat().st_mode & 0o777 == 0o640
    assert not (agents_dir / "a.yaml").exists()


@pytest.mark.parametrize(
    ("bad_text", "field"),
    [
        ("name: a\nvoice: [marin\n", "(file)"),
        (agent_yaml("a", voice="nova"), "voice"),
        (agent_yaml("a", "555-0100"), "phone_numbers[0]"),
        (agent_yaml("b"), "name"),
    ],
)
def test_invalid_save_leaves_the_file_byte_identical(agents_dir: Path, make_store,
                                                     bad_text: str, field: str) -> None:
    original = ("# keep me exactly\r\nname: a\nmodel: openai/gpt-realtime\n"
                "voice: marin\n").encode()
    path = agents_dir / "a.yaml"
    path.write_bytes(original)
    before = path.stat()
    store = make_store()
    with pytest.raises(AgentInvalid) as caught:
        store.save("a", bad_text)
    assert path.read_bytes() == original
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert any(i.field == field and i.file == str(path) and i.is_error
               for i in caught.value.issues)
    assert sorted(os.listdir(agents_dir)) == ["a.yaml"]
    assert store.get("a").spec.voice == "marin"


def test_save_refuses_a_number_another_agent_has(agents_dir: Path, make_store) -> None:
    write(agents_dir, "b.yaml", agent_yaml("b", "+15555550100"))
    store = make_store()
    # "a" would sort first and win on disk; the store refuses rather than unseat "b".
    with pytest.raises(AgentInvalid) as caught:
        store.save("a", agent_yaml("a", "+15555550100"))
    issue = caught.value.issues[-1]
    assert issue.field == "phone_numbers[0]" and "'b'" in issue.message
    assert not (agents_dir / "a.yaml").exists()
    assert store.for_number("+15555550100").name == "b"


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "Front Desk"])
def test_save_refuses_names_that_are_not_agent_names(agents_dir: Path, make_store,
                                                     name: str) -> None:
    store = make_store()
    with pytest.raises(AgentInvalid) as caught:
        store.save(name, agent_yaml("a"))
    assert caught.value.field == "name"
    assert os.listdir(agents_dir) == []
    assert not (agents_dir.parent / "evil.yaml").exists()


def test_save_creates_the_directory(tmp_path: Path, catalog, settings) -> None:
    store = AgentStore(tmp_path / "new", catalog, settings, environ={})
    store.save("a", agent_yaml("a"))
    assert (tmp_path / "new" / "a.yaml").is_file()


def test_save_fixes_a_broken_file(agents_dir: Path, make_store) -> None:
    path = write(agents_dir, "a.yaml", "name: a\nvoice: [\n")
    store = make_store()
    assert str(path) in store.problems
    store.save("a", agent_yaml("a"))
    assert store.get("a") is not None and store.problems == {}


# --- delete -----------------------------------------------------------------------------


def test_delete_removes_the_file_and_its_numbers(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a", "+15555550100"))
    store = make_store()
    store.delete("a")
    assert not (agents_dir / "a.yaml").exists()
    assert store.get("a") is None and store.for_number("+15555550100") is None


def test_delete_removes_a_broken_file_too(agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", "name: [\n")
    store = make_store()
    store.delete("a")
    assert store.problems == {} and os.listdir(agents_dir) == []


@pytest.mark.parametrize("name", ["nobody", "../a"])
def test_delete_of_an_unknown_agent_raises(agents_dir: Path, make_store, name: str) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    with pytest.raises(AgentNotFound):
        make_store().delete(name)
    assert (agents_dir / "a.yaml").exists()


# --- files built to be expensive -------------------------------------------------------

from agentplatform.agents import validation as validation_module  # noqa: E402

from .yaml_bombs import alias_bomb  # noqa: E402


@pytest.fixture
def nothing_expands(monkeypatch: pytest.MonkeyPatch) -> None:
    real = validation_module.to_plain

    def refuse(node: object) -> object:  # the bomb must never be walked as a tree
        assert not (isinstance(node, dict) and node.get("name") == "bomb" and "tools" in node), "expanded"
        return real(node)
    monkeypatch.setattr(validation_module, "to_plain", refuse)


def test_save_refuses_an_alias_bomb_and_leaves_the_file_as_it_was(
        agents_dir: Path, make_store, nothing_expands) -> None:
    path = write(agents_dir, "bomb.yaml", agent_yaml("bomb"))
    before = path.read_bytes()
    store = make_store()
    with pytest.raises(AgentInvalid) as caught:
        store.save("bomb", alias_bomb("bomb"))
    assert caught.value.file == str(path) and "aliases expand" in caught.value.message
    assert path.read_bytes() == before


async def test_save_async_refuses_an_alias_bomb_and_leaves_the_file_as_it_was(
        agents_dir: Path, make_store) -> None:
    path = write(agents_dir, "bomb.yaml", agent_yaml("bomb"))
    before = path.read_bytes()
    store = make_store()
    with pytest.raises(AgentInvalid, match="aliases expand"):
        await store.save_async("bomb", alias_bomb("bomb"))
    assert path.read_bytes() == before
    assert store.get("bomb") is not None  # the old agent still serves


def test_a_bomb_already_on_disk_loads_as_invalid_without_being_expanded(
        agents_dir: Path, make_store, nothing_expands) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    path = write(agents_dir, "bomb.yaml", alias_bomb("bomb"))
    before = path.read_bytes()
    store = make_store()
    assert list(store.agents) == ["a"]
    [issue] = store.problems[str(path)]
    assert issue.is_error and issue.field == "(file)" and "aliases expand" in issue.message
    assert path.read_bytes() == before


async def test_refresh_async_finds_a_bomb_written_to_disk_and_keeps_serving_the_rest(
        agents_dir: Path, make_store) -> None:
    write(agents_dir, "a.yaml", agent_yaml("a"))
    store = make_store()
    path = write(agents_dir, "bomb.yaml", alias_bomb("bomb"))
    assert await store.refresh_async()
    assert list(store.agents) == ["a"]
    assert "aliases expand" in store.problems[str(path)][0].message
