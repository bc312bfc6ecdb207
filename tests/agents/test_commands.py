from __future__ import annotations

from pathlib import Path

from agentplatform.agents.commands import list_agents, validate_all
from agentplatform.agents.store import AgentStore
from agentplatform.catalog import Catalog
from agentplatform.config import Settings

GOOD = """\
name: front-desk
model: openai/gpt-realtime
voice: marin
phone_numbers: ["+15555550100", "+15555550101"]
"""
DEFAULT_VOICE = """\
name: sales
model: xai/grok-voice
"""
BROKEN = """\
name: broken
model: openai/gpt-realtime
voice: nova
"""


def test_list_agents_shows_each_agent_and_each_broken_file(
    agents_dir: Path, catalog: Catalog, settings: Settings,
) -> None:
    (agents_dir / "front-desk.yaml").write_text(GOOD)
    (agents_dir / "sales.yaml").write_text(DEFAULT_VOICE)
    (agents_dir / "broken.yaml").write_text(BROKEN)
    table = list_agents(AgentStore(agents_dir, catalog, settings, environ={}))
    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "MODEL", "VOICE", "NUMBERS", "STATUS"]
    by_name = {row.split()[0]: row for row in rows}
    assert set(by_name) == {"front-desk", "sales", "broken"}
    assert "openai/gpt-realtime" in by_name["front-desk"]
    assert "+15555550100, +15555550101" in by_name["front-desk"]
    assert "ok, 1 warning" in by_name["front-desk"]
    assert "ara (default)" in by_name["sales"]
    assert "error: voice:" in by_name["broken"] and "'nova'" in by_name["broken"]
    assert rows[-1].startswith("broken")  # files that did not load come last


def test_list_agents_of_an_empty_folder_says_so(agents_dir: Path, catalog, settings) -> None:
    assert "no agents" in list_agents(AgentStore(agents_dir, catalog, settings, environ={}))


def test_validate_all_exits_zero_with_only_warnings(agents_dir: Path, catalog, settings) -> None:
    (agents_dir / "front-desk.yaml").write_text(GOOD)
    code, text = validate_all(agents_dir, catalog, settings, environ={})
    assert code == 0
    assert f"{agents_dir / 'front-desk.yaml'}:2: warning: model: " in text
    assert "0 errors, 1 warning" in text


def test_validate_all_exits_nonzero_on_any_error(agents_dir: Path, catalog, settings) -> None:
    (agents_dir / "front-desk.yaml").write_text(GOOD)
    (agents_dir / "broken.yaml").write_text(BROKEN)
    code, text = validate_all(agents_dir, catalog, settings, environ={})
    assert code == 1
    assert f"{agents_dir / 'broken.yaml'}:3: error: voice: " in text
    assert "1 valid, 1 with errors" in text


def test_validate_all_of_a_missing_folder_fails(tmp_path: Path, catalog, settings) -> None:
    code, text = validate_all(tmp_path / "nowhere", catalog, settings, environ={})
    assert code == 1 and "no such directory" in text


def test_validate_all_refuses_an_alias_bomb_naming_the_file(
        agents_dir: Path, catalog, settings, monkeypatch) -> None:
    from agentplatform.agents import validation

    from .yaml_bombs import alias_bomb

    real = validation.to_plain

    def refuse(node: object) -> object:  # the bomb must never be walked as a tree
        assert not (isinstance(node, dict) and node.get("name") == "bomb" and "tools" in node), "expanded"
        return real(node)
    monkeypatch.setattr(validation, "to_plain", refuse)
    (agents_dir / "bomb.yaml").write_text(alias_bomb("bomb"))
    code, text = validate_all(agents_dir, catalog, settings, environ={})
    assert code == 1
    assert f"{agents_dir / 'bomb.yaml'}: error: (file): line " in text
    assert "aliases expand the file past" in text
