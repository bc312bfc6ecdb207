"""What an outbound call does before, and about, the answering-machine verdict.

A call the platform placed with ``machine_detection`` other than ``off`` does not
let the agent speak until the carrier says who answered (``AnsweringMachine``), or
until ``HOLD_SECONDS`` have passed: a machine must never record half a greeting.
Meanwhile the callee's audio is kept from the model too, so it neither answers the
callee's "hello?" on its own nor hears a machine's greeting as a caller.

Then:

* a person (or "unknown", or no verdict in time): the agent greets and talks;
* a machine with ``hangup``: the call ends ``machine_detected``;
* a machine with ``leave_message``: wait for the end of its greeting (the beep),
  speak ``voicemail_message`` with barge-in off (nothing the machine plays reaches
  the model), then hang up ``voicemail_left``. A verdict that arrives while the
  agent already talks (after the hold ran out) stops it first.

This module only decides; ``bridge/call.py`` carries the decisions out. It knows no
carrier and no provider: the verdict comes as a carrier event, the voicemail goes
out through the model session like any other line the agent says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agentplatform.carriers.dialing import AnsweringMachine, MachineDetection, OutboundRequest

# How long the agent's first words wait for a verdict before speaking anyway.
HOLD_SECONDS = 4.0
# How long a machine's greeting may run before the message is left anyway.
GREETING_END_SECONDS = 30.0
VOICEMAIL_INSTRUCTION = (
    "You have reached an answering machine and its greeting has ended. Leave this "
    'voicemail message now, and nothing else. Say exactly: "{message}"'
)


class Phase(StrEnum):
    HOLDING = "holding"  # no verdict yet: the agent is silent, the model hears nothing
    TALKING = "talking"  # a conversation (or no detection at all)
    AWAITING_BEEP = "awaiting_beep"  # a machine; its greeting is still playing
    LEAVING_MESSAGE = "leaving_message"  # the voicemail is being spoken
    DONE = "done"  # a machine, hung up on


class Step(StrEnum):
    """What the bridge does next."""

    NOTHING = "nothing"
    GREET = "greet"  # let the agent speak: the greeting, then the conversation
    HANG_UP = "hang_up"  # end the call ``machine_detected``
    AWAIT_BEEP = "await_beep"  # stay silent until the machine's greeting ends
    LEAVE_MESSAGE = "leave_message"  # speak the voicemail, then end ``voicemail_left``


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    # The agent was already talking (the hold ran out before the verdict): stop it.
    interrupt: bool = False


_NOTHING = Decision(Step.NOTHING)


class AnsweringGate:
    """The answering-machine state of one call."""

    def __init__(self, outbound: OutboundRequest | None) -> None:
        self.mode = outbound.machine_detection if outbound is not None else MachineDetection.OFF
        self.voicemail_message = outbound.voicemail_message if outbound is not None else ""
        self.phase = Phase.TALKING if self.mode is MachineDetection.OFF else Phase.HOLDING
        self.verdict = ""  # the carrier's own words for the verdict, once given

    @property
    def holds(self) -> bool:
        """Whether the agent's first words wait for a verdict."""
        return self.phase is Phase.HOLDING

    @property
    def muted(self) -> bool:
        """Whether the callee's audio is kept from the model (and barge-in is off)."""
        return self.phase is not Phase.TALKING

    def on_verdict(self, event: AnsweringMachine) -> Decision:
        """A verdict from the carrier; several may come (a machine, then its beep)."""
        if self.phase in (Phase.LEAVING_MESSAGE, Phase.DONE):
            return _NOTHING
        self.verdict = event.detail or event.verdict
        was_talking = self.phase is Phase.TALKING
        if event.verdict != "machine":
            if self.phase is Phase.HOLDING:
                self.phase = Phase.TALKING
                return Decision(Step.GREET)
            return _NOTHING  # a person after a machine verdict: the first word stands
        if self.mode is MachineDetection.HANGUP:
            self.phase = Phase.DONE
            return Decision(Step.HANG_UP, interrupt=was_talking)
        if event.greeting_ended:
            self.phase = Phase.LEAVING_MESSAGE
            return Decision(Step.LEAVE_MESSAGE, interrupt=was_talking)
        if self.phase is Phase.AWAITING_BEEP:
            return _NOTHING
        self.phase = Phase.AWAITING_BEEP
        return Decision(Step.AWAIT_BEEP, interrupt=was_talking)

    def hold_ran_out(self) -> Decision:
        """``HOLD_SECONDS`` passed with no verdict: speak, a person is likelier."""
        if self.phase is not Phase.HOLDING:
            return _NOTHING
        self.phase = Phase.TALKING
        return Decision(Step.GREET)

    def greeting_ran_long(self) -> Decision:
        """``GREETING_END_SECONDS`` passed with the machine still greeting: leave the
        message now rather than never."""
        if self.phase is not Phase.AWAITING_BEEP:
            return _NOTHING
        self.phase = Phase.LEAVING_MESSAGE
        return Decision(Step.LEAVE_MESSAGE)

    def voicemail_instruction(self) -> str:
        return VOICEMAIL_INSTRUCTION.format(message=self.voicemail_message)
