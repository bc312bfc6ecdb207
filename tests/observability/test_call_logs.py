"""What an operator reads in the log: the agents at start-up with their numbers and
keys, one line when a call starts and one when it ends, and a call's id on every
line logged about it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from agentplatform.agents.store import AgentStore
from agentplatform.audio.frames import tone
from agentplatform.catalog import load_catalog
from agentplatform.observability.logging import CallContextFilter
from agentplatform.observability.startup import announce_agents
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_caller import TwilioCaller

NUMBER = "+15555550400"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(CallContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _settings(tmp_path: Path, **overrides):
    return simulated_settings(agents_dir=tmp_path / "agents",
                              database_url=f"sqlite:///{tmp_path / 'calls.db'}", **overrides)


def test_the_start_up_log_names_each_agent_its_numbers_and_missing_keys(tmp_path):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "desk.yaml").write_text(
        f'name: desk\nprompt: hi\nphone_numbers: ["{NUMBER}"]\n')
    (tmp_path / "agents" / "quiet.yaml").write_text("name: quiet\nprompt: hi\n")
    settings = _settings(tmp_path, openai_api_key="")
    catalog = load_catalog()
    store = AgentStore(settings.agents_dir, catalog, settings)
    store.refresh()
    lines = announce_agents(store, catalog, settings)
    assert lines == [f"agent desk: openai/gpt-realtime, {NUMBER}; missing OPENAI_API_KEY",
                     "agent quiet: openai/gpt-realtime, no numbers; missing OPENAI_API_KEY"]


def test_a_line_about_a_call_logged_outside_it_names_the_call():
    handler = _Collect()
    log = logging.getLogger("test.sip.datagram")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("call %s: no RTP from the caller; ending the call", "sip-1234")
        log.info("SIP listening on %s", "0.0.0.0:5060")
    finally:
        log.removeHandler(handler)
    assert [r.call_id for r in handler.records] == ["sip-1234", "-"]


async def test_a_call_logs_one_start_and_one_end_line_and_every_line_names_it(tmp_path):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "desk.yaml").write_text(
        f'name: desk\nprompt: hi\ngreeting: Hello.\nphone_numbers: ["{NUMBER}"]\n')
    handler = _Collect()
    root = logging.getLogger("agentplatform")
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        async with OpenAIRealtimeServer(pace=1.0, reply_ms=400,
                                        caller_texts=["Are you open?"]) as sim, \
                local_server(_settings(tmp_path, openai_url=sim.url)) as server:
            handler.records.clear()
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                await caller.say(tone(440, 800, 8000, amplitude=0.4))
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
            await server.platform.writer.flush()
            for _ in range(50):
                if any(r.getMessage().startswith("call ended") for r in handler.records):
                    break
                await asyncio.sleep(0.05)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    during = [r for r in handler.records if not r.name.startswith("agentplatform.storage")]
    started = [r for r in during if r.getMessage().startswith("call started")]
    ended = [r for r in during if r.getMessage().startswith("call ended")]
    assert len(started) == 1 and len(ended) == 1
    assert f"→ {NUMBER}, agent desk" in started[0].getMessage()
    assert "caller_hung_up" in ended[0].getMessage()
    call_id = started[0].call_id
    assert call_id != "-" and ended[0].call_id == call_id
    assert [r.getMessage() for r in during if r.call_id == "-"] == []
