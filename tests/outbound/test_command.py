"""``agentplatform dial``: its arguments, the body it posts, and what it prints, against
a running server over a real socket."""

from __future__ import annotations

import asyncio

import pytest

from agentplatform.cli import build_parser
from agentplatform.outbound.command import dial_body, run_dial
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.web.passwords import hash_password

HASH = hash_password("correct horse battery", n=2**10)  # protected: the API needs the key

AGENT = """\
name: reminders
model: openai/gpt-realtime
prompt: Hi {{params.name}}.
phone_numbers: ["+15555550100"]
"""


def parse(*argv: str):
    return build_parser().parse_args(["dial", *argv])


def test_the_arguments_become_the_api_body():
    args = parse("reminders", "+15555550142", "--from", "+15555550100", "--carrier", "twilio",
                 "--param", "name=Ada", "--param", "slot=9:30=am",
                 "--machine-detection", "leave_message", "--voicemail-message", "Call back.")
    assert dial_body(args) == {
        "agent": "reminders", "to": "+15555550142", "from": "+15555550100",
        "carrier": "twilio", "params": {"name": "Ada", "slot": "9:30=am"},
        "machine_detection": "leave_message", "voicemail_message": "Call back."}
    assert dial_body(parse("reminders", "+15555550142")) == {
        "agent": "reminders", "to": "+15555550142"}


@pytest.mark.parametrize("argv", [["reminders", "+1555", "--param", "novalue"],
                                  ["reminders", "+1555", "--machine-detection", "maybe"],
                                  ["reminders"]])
def test_bad_arguments_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)


async def test_it_posts_with_the_api_key_and_prints_the_servers_reason(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "reminders.yaml").write_text(AGENT)
    settings = simulated_settings(agents_dir=tmp_path / "agents",
                                  database_url=f"sqlite:///{tmp_path / 'calls.db'}",
                                  api_key="k-123", admin_password_hash=HASH)
    async with local_server(settings) as server:
        monkeypatch.setenv("API_KEY", "k-123")
        args = parse("reminders", "+15555550142", "--server", server.base_url)
        code = await asyncio.to_thread(run_dial, args)
        monkeypatch.setenv("API_KEY", "wrong")
        refused = await asyncio.to_thread(run_dial, args)
    err = capsys.readouterr().err
    assert code == 1 and "not placed (503)" in err and "TWILIO_ACCOUNT_SID" in err
    assert refused == 1 and "not placed (401)" in err


async def test_an_unreachable_server_exits_2(capsys):
    args = parse("reminders", "+15555550142", "--server", "http://127.0.0.1:9")
    assert await asyncio.to_thread(run_dial, args) == 2
    assert "could not reach" in capsys.readouterr().err
