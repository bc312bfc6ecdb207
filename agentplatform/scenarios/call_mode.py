"""Run a scenario as a phone call: Twilio Media Streams, real time, the local voice.

The server runs in-process (``testing/stack.py``) on a scenario's own database and
agents folder; the caller is the simulated Twilio caller (``testing/twilio_caller.py``)
speaking each ``say:`` in the local Piper voice (``testing/speech_fixtures.py``),
playing ``audio:`` WAVs, pressing ``dtmf:`` keys, keeping quiet for ``silence_ms:``,
and talking over the agent for ``barge_in:``. A simulated Twilio REST API stands in
for Twilio's, so the agent's transfers and hang-ups go through the carrier's real
control path. The record is then read back from the server's API, the same record a
real call leaves, and that is what the assertions check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from agentplatform.agents.spec import AgentSpec
from agentplatform.audio.wav import read_wav
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.scenarios.spec import Scenario, Turn
from agentplatform.storage.models import CallDetail, utcnow
from agentplatform.testing.line_impairments import LineImpairments
from agentplatform.testing.sip_caller import CallState, SipCaller
from agentplatform.testing.stack import LocalServer
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller
from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID,
    Callee,
    SimulatedCall,
    TwilioRestServer,
)

GREETING_WAIT_S = 20.0  # the first audio of the greeting (a cold local voice is slow)
ANSWER_WAIT_S = 20.0  # the first audio of an answer
QUIET_MS = 700  # the agent has finished when the line is this quiet
RECORD_WAIT_S = 10.0


@dataclass(slots=True)
class CallRun:
    call: CallDetail
    marks: list[datetime]
    error: str = ""


def call_settings(base: Settings, *, agents_dir: Path, database_url: str,
                  rest_url: str) -> Settings:
    """The in-process server's settings: the scenario's folder and database, Twilio's
    REST API simulated, every request signed."""
    return base.model_copy(update={
        "agents_dir": agents_dir, "database_url": database_url, "public_url": "",
        "twilio_account_sid": SIMULATED_ACCOUNT_SID, "twilio_auth_token": SIMULATED_AUTH_TOKEN,
        "twilio_api_base_url": rest_url, "insecure_skip_twilio_signature": False,
    })


def _adopt(rest: TwilioRestServer, caller: TwilioCaller, to: str) -> None:
    """Let the simulated REST API control this inbound call (as Twilio controls any
    call on the account): a transfer's new TwiML stops our stream and dials."""
    rest.calls[caller.call_sid] = SimulatedCall(
        sid=caller.call_sid, to=to, from_=caller.from_, callee=Callee(), create_form=[],
        twiml="", status="in-progress", streams=[caller])


class _Line:
    """What a scenario does with a caller, the same on either carrier."""

    def __init__(self, caller: TwilioCaller | SipCaller) -> None:
        self.caller = caller

    @property
    def carrier_call_id(self) -> str:
        caller = self.caller
        return caller.call_sid if isinstance(caller, TwilioCaller) else caller.call_id

    def ended(self) -> bool:
        caller = self.caller
        if isinstance(caller, TwilioCaller):
            return caller.close_code is not None
        return caller.closed_by_server or caller.state is CallState.ENDED

    async def next_answer(self, timeout: float) -> object:
        """Until the agent's next audio arrives."""
        caller = self.caller
        if isinstance(caller, TwilioCaller):
            return await caller.wait_for_audio(timeout)
        return await caller.wait_for_audio(timeout, since=len(caller.heard_pcm()))

    async def unless_closed(self, wait: Awaitable[object]) -> bool:
        """Run ``wait`` until done or until the call is over; False when the call ended
        first (a transfer or a hang-up stops the line, and its playback clock with it)
        or ``wait`` timed out."""
        waiting = asyncio.ensure_future(wait)
        closed = asyncio.ensure_future(self.caller.wait_closed(24 * 3600))
        try:
            done, _ = await asyncio.wait({waiting, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, closed):
                task.cancel()
            await asyncio.gather(waiting, closed, return_exceptions=True)
        return waiting in done and not waiting.cancelled() and waiting.exception() is None

    async def answer(self, *, then_quiet: bool, timeout: float = ANSWER_WAIT_S) -> bool:
        """The agent answers (audio arrives) and, if ``then_quiet``, finishes."""
        if not await self.unless_closed(self.next_answer(timeout)):
            return False
        if then_quiet:
            await self.unless_closed(self.caller.wait_for_silence(QUIET_MS, 60))
        return True


def _speech(turn: Turn, scenario: Scenario) -> bytes:
    if turn.audio is not None:
        path = Path(turn.audio)
        if not path.is_absolute():
            path = Path(scenario.path).parent / path
        return read_wav(path, 8000)
    from agentplatform.testing.speech_fixtures import spoken

    assert turn.say is not None
    return spoken(turn.say)


async def _read_record(base_url: str, call_sid: str) -> CallDetail | None:
    """The call's record from the server's API, once the server has closed it."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        deadline = asyncio.get_running_loop().time() + RECORD_WAIT_S
        while True:
            calls = (await client.get("/api/calls", params={"limit": 20})).json()["calls"]
            found = next((c for c in calls if c["carrier_call_id"] == call_sid), None)
            if found is not None and found.get("end_reason"):
                detail = (await client.get(f"/api/calls/{found['id']}")).json()
                return CallDetail.model_validate(detail)
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.1)


async def warm_up(agent: AgentSpec, catalog: Catalog) -> None:
    """Load the local engines the agent uses and render its fixed lines first, as a
    server that has been up a moment has: the scenario measures a warm server, not
    the one-off cost of loading Whisper and Piper."""
    from agentplatform.cascade.warmup import (
        fixed_lines,
        local_engines_in_use,
        warm_local_engines,
    )

    engines = local_engines_in_use([agent], catalog)
    if engines:
        await warm_local_engines(engines, fixed_lines([agent], catalog))


async def _dial(carrier: str, server: LocalServer, settings: Settings, number: str,
                line: LineImpairments | None, rest: TwilioRestServer) -> tuple[_Line, str]:
    """The caller on ``carrier``, dialled; "" or why the server did not take the call."""
    if carrier == "sip":
        sip = SipCaller(settings.sip_listen, to=number, from_user="+15555550199")
        if not await sip.dial():
            await sip.close()
            return _Line(sip), f"the SIP server answered {sip.final_status}"
        return _Line(sip), ""
    caller = TwilioCaller(server.base_url, to=number, from_="+15555550199", line=line)
    if not await caller.dial():
        answer = caller.answer.xml if caller.answer else ""
        why = f"the server did not connect the call ({caller.webhook_status}): {answer}"
        return _Line(caller), why
    _adopt(rest, caller, number)
    return _Line(caller), ""


async def run_call(scenario: Scenario, agent: AgentSpec, settings: Settings, catalog: Catalog,
                   *, carrier: str = "twilio", line: LineImpairments | None = None) -> CallRun:
    """Place ``scenario`` as one call to the agent's first number on a server built from
    ``settings`` (``call_settings``; its REST URL is replaced by the simulator's here),
    over Twilio Media Streams or, with ``carrier="sip"``, over SIP/RTP."""
    if carrier == "sip" and line is not None:
        raise ValueError("line impairments are simulated on the Twilio caller only")
    marks: list[datetime] = []
    number = agent.phone_numbers[0]
    await warm_up(agent, catalog)
    async with TwilioRestServer() as rest:
        overrides: dict[str, object] = {"twilio_api_base_url": rest.url}
        if carrier == "sip":
            from agentplatform.testing.call_runner import local_sip_settings

            overrides.update(local_sip_settings())
        settings = settings.model_copy(update=overrides)
        async with LocalServer(settings) as server:
            talk, refused = await _dial(carrier, server, settings, number, line, rest)
            if refused:
                return CallRun(_no_record(scenario, talk.carrier_call_id), marks, refused)
            try:
                await talk.answer(then_quiet=True, timeout=GREETING_WAIT_S)  # the greeting
                await _converse(scenario, talk, marks)
            finally:
                await talk.caller.hang_up()
            record = await _read_record(server.base_url, talk.carrier_call_id)
    if record is None:
        return CallRun(_no_record(scenario, talk.carrier_call_id), marks,
                       "the server left no closed call record")
    return CallRun(record, marks)


def _no_record(scenario: Scenario, carrier_call_id: str) -> CallDetail:
    return CallDetail(id="", carrier_call_id=carrier_call_id, agent=scenario.agent, model="",
                      requested_model="")


async def _converse(scenario: Scenario, talk: _Line, marks: list[datetime]) -> None:
    turns = scenario.turns
    for index, turn in enumerate(turns):
        if talk.ended():
            return  # the agent hung up or transferred: later turns are not reached
        following = turns[index + 1] if index + 1 < len(turns) else None
        barging = following is not None and following.barge_in is not None
        await asyncio.sleep(0.002)
        marks.append(utcnow())
        if turn.silence_ms is not None:
            await asyncio.sleep(turn.silence_ms / 1000.0)
            continue
        if turn.dtmf is not None:
            for digit in turn.dtmf:
                await talk.caller.send_dtmf(digit)
                await asyncio.sleep(0.1)
        else:
            await talk.caller.say(_speech(turn, scenario))
        answered = await talk.answer(then_quiet=not barging)
        if answered and barging:
            assert following is not None and following.barge_in is not None
            await asyncio.sleep(following.barge_in.after_ms / 1000.0)
