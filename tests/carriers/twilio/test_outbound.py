"""Twilio outbound: the calls.create request (checked by the REST simulator over a real
socket), the TwiML and stream token it carries, and how callbacks are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentplatform.carriers.dialing import AnsweringMachine, MachineDetection, OutboundRequest
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.outbound import (
    LiveStreams, TwilioDialer, request_from_parameters, stream_parameters, verdict_of,
)
from agentplatform.config import Settings
from agentplatform.errors import CarrierError
from agentplatform.testing.twilio_caller import parse_twiml
from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID, Callee, TwilioRestServer,
)

TO = "+15555550142"
PUBLIC = "https://voice.example.com/base"


@dataclass
class Context:
    progress: list[tuple[str, str, str]] = field(default_factory=list)
    ended: list[tuple[str, str, str]] = field(default_factory=list)

    def dial_progress(self, request, status="ringing", carrier_call_id=""):
        self.progress.append((request.call_id, status, carrier_call_id))

    def dial_ended(self, request, reason, detail=""):
        self.ended.append((request.call_id, reason, detail))


def settings(**overrides) -> Settings:
    values = dict(agents_dir=Path("agents"), twilio_account_sid=SIMULATED_ACCOUNT_SID,
                  twilio_auth_token="simulated-twilio-auth-token", public_url=PUBLIC,
                  stream_token_secret="s")
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def request(**overrides) -> OutboundRequest:
    values = dict(call_id="c0ffee", agent="reminders", to_number=TO, from_number="+15555550100",
                  carrier="twilio", params={"name": "Ada"},
                  machine_detection=MachineDetection.LEAVE_MESSAGE,
                  voicemail_message="Call us back.")
    values.update(overrides)
    return OutboundRequest(**values)  # type: ignore[arg-type]


def dialer(s: Settings, context: Context | None = None) -> TwilioDialer:
    return TwilioDialer(s, StreamTokens.from_settings(s), context or Context(), LiveStreams())


async def test_calls_create_carries_the_stream_twiml_status_events_and_async_amd():
    context = Context()
    async with TwilioRestServer(callees={TO: Callee("busy", ring_seconds=5)}) as twilio:
        d = dialer(settings(twilio_api_base_url=twilio.url), context)
        await d.place_call(request())
        call = await twilio.wait_for_call()
    path, _ = twilio.requests[0]
    assert path == f"/2010-04-01/Accounts/{SIMULATED_ACCOUNT_SID}/Calls.json"
    assert (call.field("To"), call.field("From")) == (TO, "+15555550100")
    assert call.field("StatusCallback") == (
        "https://voice.example.com/base/twilio/dial-status?call=c0ffee&agent=reminders")
    assert call.fields("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert (call.field("MachineDetection"), call.field("AsyncAmd")) == ("DetectMessageEnd", "true")
    assert call.field("AsyncAmdStatusCallback") == "https://voice.example.com/base/twilio/amd"
    assert call.field("Timeout") == "30"
    answer = parse_twiml(call.twiml)
    assert answer.stream_url == "wss://voice.example.com/base/twilio/media" and answer.hangup
    params = answer.parameters
    assert params["params.name"] == "Ada" and params["outbound_call"] == "c0ffee"
    # The token opens one stream, for the platform's call id, to the agent.
    grant = StreamTokens.from_settings(settings()).verify(params["token"], "c0ffee")
    assert grant.agent == "reminders"
    # Twilio's sid is reported as soon as the call is created.
    assert context.progress[0] == ("c0ffee", "ringing", call.sid)


async def test_no_machine_detection_asks_twilio_for_none():
    async with TwilioRestServer(callees={TO: Callee("busy", ring_seconds=5)}) as twilio:
        d = dialer(settings(twilio_api_base_url=twilio.url))
        await d.place_call(request(machine_detection=MachineDetection.OFF, voicemail_message=""))
        call = await twilio.wait_for_call()
    assert call.field("MachineDetection") == "" and call.field("AsyncAmd") == ""


async def test_twilio_refusing_the_call_raises_with_its_code():
    async with TwilioRestServer(callees={}) as twilio:
        d = dialer(settings(twilio_api_base_url=twilio.url))
        with pytest.raises(CarrierError, match="21211"):
            await d.place_call(request())
        wrong = dialer(settings(twilio_api_base_url=twilio.url, twilio_auth_token="wrong"))
        with pytest.raises(CarrierError, match="20003"):
            await wrong.place_call(request())


@pytest.mark.parametrize("missing", ["twilio_account_sid", "twilio_auth_token", "public_url"])
async def test_without_credentials_or_public_url_it_fails_closed_and_says_which(missing):
    d = dialer(settings(**{missing: ""}))
    problem = d.problem()
    assert problem is not None and missing.upper() in problem
    with pytest.raises(CarrierError):
        await d.place_call(request())


def test_the_stream_parameters_give_back_the_request_on_any_server():
    original = request()
    rebuilt = request_from_parameters(stream_parameters(original, "tok"), "reminders")
    assert rebuilt == original
    assert request_from_parameters({"from": "+1555", "to": "+1666"}, "reminders") is None


@pytest.mark.parametrize("answered_by,verdict,ended", [
    ("human", "human", False), ("unknown", "unknown", False),
    ("machine_start", "machine", False), ("machine_end_beep", "machine", True),
    ("machine_end_silence", "machine", True), ("machine_end_other", "machine", True),
    ("fax", "machine", True),
])
def test_answered_by_maps_to_a_verdict(answered_by, verdict, ended):
    assert verdict_of(answered_by) == AnsweringMachine(verdict, ended, answered_by)


def test_an_undocumented_answered_by_is_dropped():
    assert verdict_of("robot") is None


@pytest.mark.parametrize("status,reason", [
    ("busy", "busy"), ("no-answer", "no_answer"), ("failed", "failed"), ("canceled", "failed"),
    ("completed", "completed")])
def test_final_statuses_end_the_dial_with_our_reason(status, reason):
    context = Context()
    dialer(settings(), context).on_dial_status("c1", "reminders",
                                               {"CallSid": "CA1", "CallStatus": status})
    assert [(c, r) for c, r, _ in context.ended] == [("c1", reason)]


def test_ringing_reports_progress_and_answered_leaves_the_call_to_its_stream():
    context = Context()
    d = dialer(settings(), context)
    d.on_dial_status("c1", "a", {"CallSid": "CA1", "CallStatus": "ringing"})
    d.on_dial_status("c1", "a", {"CallSid": "CA1", "CallStatus": "in-progress"})
    assert context.progress == [("c1", "ringing", "CA1")] and context.ended == []


class _Stream:
    def __init__(self) -> None:
        self.events: list[object] = []

    def deliver(self, event: object) -> None:
        self.events.append(event)


def test_a_verdict_reaches_the_live_stream_of_its_call_even_if_it_came_first():
    live = LiveStreams()
    early, late = _Stream(), _Stream()
    verdict = AnsweringMachine("human", detail="human")
    assert live.deliver("CA1", verdict) is False  # no stream yet: kept
    live.add("CA1", early)  # type: ignore[arg-type]
    live.add("CA2", late)  # type: ignore[arg-type]
    assert live.deliver("CA2", verdict) is True
    assert early.events == [verdict] and late.events == [verdict]
