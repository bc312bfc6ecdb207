"""One server with something on every admin page, shared by the page-by-page browser
tests: two agents (a realtime desk with numbers and tools, an offline rules desk), an
ended call with turns, tools and events, a live call, and a campaign."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from agentplatform.campaigns import store as campaigns
from agentplatform.campaigns.contacts_csv import ContactRow
from agentplatform.campaigns.store import CampaignSettings
from agentplatform.realtime.base import Usage
from agentplatform.records import CallStart, EndReason
from agentplatform.storage.database import make_engine
from agentplatform.storage.models import utcnow
from agentplatform.testing.stack import LocalServer, simulated_settings

FRONT_DESK = """\
# The clinic's front desk.
name: front-desk
description: Answers the main line of the Riverside Family Clinic, books and moves appointments.
model: openai/gpt-realtime
voice: marin
greeting: Thanks for calling the clinic, how can I help?
prompt: You answer the phone for a clinic.
phone_numbers: ["+15555550100", "+15555550101"]
tools:
  - type: webhook
    name: check_availability_for_a_long_named_practitioner
    description: Free slots on a day.
    url: https://scheduling.example.com/api/v2/practices/riverside-family-clinic/availability
  - type: end_call
  - type: transfer_call
    destinations: {reception: "+15555550111"}
"""
DESK = """\
name: desk
description: The offline rules desk.
model: local/offline
voice_streaming: false
rules:
  - match: "hours|open"
    reply: We are open from nine to five.
  - match: "bye"
    reply: Thanks for calling, goodbye!
    tool: {name: end_call}
fallback_reply: Sorry, I can only help with our hours.
tools:
  - type: end_call
"""


@dataclass(slots=True)
class Seeded:
    server: LocalServer
    ended_call: str
    live_call: str
    campaign: str

    @property
    def base_url(self) -> str:
        return self.server.base_url


def make_settings(tmp: Path, **overrides: object):
    agents = tmp / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "front-desk.yaml").write_text(FRONT_DESK)
    (agents / "desk.yaml").write_text(DESK)
    return simulated_settings(agents_dir=agents, database_url=f"sqlite:///{tmp / 'calls.db'}",
                              **overrides)


async def seed(server: LocalServer) -> Seeded:
    """Write an ended call, a live call and a campaign through the platform's own writer
    and store, as real calls and uploads would."""
    writer = server.platform.writer
    ended, live = "a" * 32, "b" * 32
    writer.call_started(CallStart(ended, "CA" + "0123456789abcdef" * 2, "front-desk",
                                  "openai/gpt-realtime", "twilio", "+15555550199",
                                  "+15555550100"))
    writer.event(ended, "model_connected", {"model": "openai/gpt-realtime", "connect_ms": 412.5})
    writer.turn(ended, "assistant", "Thanks for calling the clinic, how can I help?")
    writer.turn(ended, "user", "Hello, do you have a free appointment on Monday morning "
                "with Doctor Fitzgerald-Montgomery-Abernathy? "
                "https://example.com/a/very/long/link/that/does/not/break/anywhere/at/all")
    writer.tool_invocation(ended, "check_availability_for_a_long_named_practitioner",
                           '{"day": "monday", "practitioner": "fitzgerald-montgomery"}',
                           '{"first": "Monday at 9:30", "others": ["10:00", "10:30", "11:00"]}',
                           ok=True, duration_ms=212.0)
    writer.turn(ended, "assistant", "The first free slot is Monday at 9:30.",
                latency_ms=1107.0, model_ms=587.0, tool_ms=212.0,
                parts={"end_of_turn": 500.0, "model": 375.0, "tools": 212.0, "other": 20.0})
    writer.turn(ended, "user", "Great, thanks, bye.")
    writer.turn(ended, "assistant", "Goodbye!", latency_ms=640.0, model_ms=420.0, tool_ms=0.0)
    writer.event(ended, "turn", {"turn_ms": 1200, "speech_stopped_ms": 1834.2,
                                 "note": "a long detail value " * 6})
    writer.usage(ended, "openai/gpt-realtime",
                 Usage(input_text=1200, input_audio=3400, output_text=120, output_audio=2100))
    writer.call_ended(ended, EndReason.CALLER_HUNG_UP, "caller hung up")
    writer.call_started(CallStart(live, "CA" + "fedcba9876543210" * 2, "front-desk",
                                  "openai/gpt-realtime", "twilio", "+15555550198",
                                  "+15555550101"))
    writer.turn(live, "assistant", "Thanks for calling the clinic, how can I help?")
    writer.turn(live, "user", "I need to move my appointment.")
    await writer.flush()
    engine = make_engine(server.settings.database_url)
    spec = CampaignSettings(name="Flu shot reminders for the autumn season", agent="front-desk",
                            carrier="twilio", from_number="+15555550100",
                            hours_start="09:00", hours_end="18:00")
    rows = [ContactRow(i + 2, f"+1415555{100 + i:04d}", {"name": f"n{i}"}, "America/New_York")
            for i in range(3)]
    campaign = await asyncio.to_thread(campaigns.create_campaign, engine, spec, rows,
                                       now=utcnow())
    engine.dispose()
    return Seeded(server, ended, live, campaign)


def page_paths(seeded: Seeded) -> dict[str, str]:
    """Every admin page, by a short name used in screenshot file names."""
    return {
        "agents": "/",
        "agent-new": "/agents/new",
        "edit-general": "/agents/front-desk?tab=general",
        "edit-speech": "/agents/front-desk?tab=speech",
        "edit-tools": "/agents/front-desk?tab=tools",
        "edit-advanced": "/agents/front-desk?tab=advanced",
        "edit-yaml": "/agents/front-desk?tab=yaml",
        "edit-offline": "/agents/desk",
        "edit-rules": "/agents/desk?tab=rules",
        "agent-delete": "/agents/desk/delete",
        "agent-tests": "/agents/front-desk/tests",
        "chat": "/agents/front-desk/chat",
        "browser-call": "/agents/front-desk/call",
        "dial": "/agents/front-desk/dial",
        "calls": "/calls",
        "call-ended": f"/calls/{seeded.ended_call}",
        "call-live": f"/calls/{seeded.live_call}",
        "campaigns": "/campaigns",
        "campaign-new": "/campaigns/new",
        "campaign": f"/campaigns/{seeded.campaign}",
        "login": "/login",
        "numbers": "/numbers",
    }
