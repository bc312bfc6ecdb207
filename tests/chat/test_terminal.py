"""``agentplatform chat AGENT``: in-process and against a running server."""

from __future__ import annotations

import io
import sys

from agentplatform.cli import main as cli_main
from agentplatform.config import get_settings

RULES_AGENT = """\
name: desk
model: local/offline
voice_streaming: false
greeting: Hello, this is the desk.
rules:
  - match: "bye"
    tool: {name: end_call}
    after_tool: "Goodbye then."
  - match: "open"
    reply: We are open from eight to five.
tools:
  - type: end_call
"""


def test_chat_command_prints_the_greeting_the_answer_and_tool_calls(tmp_path, monkeypatch, capsys):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "desk.yaml").write_text(RULES_AGENT)
    monkeypatch.setenv("AGENTS_DIR", str(tmp_path / "agents"))
    monkeypatch.setenv("LOCAL_LLM_URL", "")
    get_settings.cache_clear()
    monkeypatch.setattr(sys, "stdin", io.StringIO("when are you open?\nbye\n"))
    try:
        assert cli_main(["chat", "desk"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "desk: Hello, this is the desk." in out
    assert "We are open from eight to five." in out
    assert "[tool] end_call(" in out and "would now hang up" in out
    assert "Goodbye then." in out


def test_chat_command_one_message_to_an_unknown_agent_fails_clearly(tmp_path, monkeypatch):
    (tmp_path / "agents").mkdir()
    monkeypatch.setenv("AGENTS_DIR", str(tmp_path / "agents"))
    get_settings.cache_clear()
    try:
        cli_main(["chat", "nobody", "--message", "hi"])
    except SystemExit as exc:
        assert "cannot chat with 'nobody'" in str(exc)
    else:
        raise AssertionError("expected a clear exit")
    finally:
        get_settings.cache_clear()


async def test_chat_command_against_a_running_server(tmp_path):
    import argparse

    from agentplatform.chat.terminal import run_chat_command
    from agentplatform.testing.stack import local_server, simulated_settings

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "desk.yaml").write_text(RULES_AGENT)
    settings = simulated_settings(agents_dir=tmp_path / "agents",
                                  database_url=f"sqlite:///{tmp_path / 'c.db'}")
    out = io.StringIO()
    async with local_server(settings) as server:
        args = argparse.Namespace(agent="desk", message="are you open?", url=server.base_url,
                                  api_key="")
        assert await run_chat_command(args, out=out) == 0
    assert "We are open from eight to five." in out.getvalue()
