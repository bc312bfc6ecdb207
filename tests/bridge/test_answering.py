"""The answering-machine gate: what each verdict means for each detection mode."""

from __future__ import annotations

import pytest

from agentplatform.bridge.answering import AnsweringGate, Phase, Step
from agentplatform.carriers.dialing import AnsweringMachine, MachineDetection, OutboundRequest


def gate(mode: MachineDetection, message: str = "Call us back.") -> AnsweringGate:
    return AnsweringGate(OutboundRequest(call_id="c1", agent="a", to_number="+15550001111",
                                         from_number="+15550002222", carrier="twilio",
                                         machine_detection=mode, voicemail_message=message))


def machine(ended: bool = True) -> AnsweringMachine:
    return AnsweringMachine("machine", greeting_ended=ended, detail="machine_end_beep")


def test_an_inbound_call_and_detection_off_talk_at_once_and_hear_the_caller():
    for g in (AnsweringGate(None), gate(MachineDetection.OFF)):
        assert not g.holds and not g.muted


@pytest.mark.parametrize("mode", [MachineDetection.HANGUP, MachineDetection.LEAVE_MESSAGE])
def test_the_agent_holds_and_the_model_hears_nothing_until_a_human_verdict(mode):
    g = gate(mode)
    assert g.holds and g.muted
    assert g.on_verdict(AnsweringMachine("human", detail="human")).step is Step.GREET
    assert not g.muted and g.verdict == "human"
    assert g.on_verdict(AnsweringMachine("human")).step is Step.NOTHING  # once only


def test_an_unknown_verdict_or_the_hold_running_out_lets_the_agent_speak():
    assert gate(MachineDetection.HANGUP).on_verdict(AnsweringMachine("unknown")).step is Step.GREET
    g = gate(MachineDetection.HANGUP)
    assert g.hold_ran_out().step is Step.GREET and g.phase is Phase.TALKING
    assert g.hold_ran_out().step is Step.NOTHING


def test_a_machine_with_hangup_hangs_up_and_stops_an_agent_already_talking():
    assert gate(MachineDetection.HANGUP).on_verdict(machine()).step is Step.HANG_UP
    g = gate(MachineDetection.HANGUP)
    g.hold_ran_out()
    decision = g.on_verdict(machine())
    assert decision.step is Step.HANG_UP and decision.interrupt


def test_leave_message_waits_for_the_greeting_to_end_then_leaves_the_message_once():
    g = gate(MachineDetection.LEAVE_MESSAGE, "Your table is ready.")
    assert g.on_verdict(machine(ended=False)).step is Step.AWAIT_BEEP
    assert g.muted and g.on_verdict(machine(ended=False)).step is Step.NOTHING
    assert g.on_verdict(machine(ended=True)).step is Step.LEAVE_MESSAGE
    assert g.muted  # barge-in stays off while the message plays
    assert g.on_verdict(machine(ended=True)).step is Step.NOTHING
    assert 'Say exactly: "Your table is ready."' in g.voicemail_instruction()


def test_a_greeting_that_never_ends_gets_the_message_anyway():
    g = gate(MachineDetection.LEAVE_MESSAGE)
    g.on_verdict(machine(ended=False))
    assert g.greeting_ran_long().step is Step.LEAVE_MESSAGE
    assert gate(MachineDetection.LEAVE_MESSAGE).greeting_ran_long().step is Step.NOTHING
