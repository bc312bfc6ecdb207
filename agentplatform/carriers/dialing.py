"""What the platform asks of a carrier when it places a call, and what comes back.

An outbound call is minted by the platform (``agentplatform/outbound/``): the call
record exists, with its platform id, before the carrier dials. The carrier then

* places the call (``Carrier.place_call``), returning once the attempt is under way
  (Twilio: the REST request was accepted; SIP: the INVITE went out) and raising
  ``CarrierError`` when it cannot even start;
* when the callee answers, hands the call over like an inbound one
  (``CarrierContext.handle_call``) with ``CallInfo.outbound`` set to the request, so
  the bridge knows to keep the record id, to wait for the answering-machine verdict
  and what to do with a machine;
* when the callee never answers, reports the outcome once
  (``CarrierContext.dial_ended``): ``busy``, ``no_answer`` or ``failed``;
* sends ``AnsweringMachine`` among the call's events when it has a verdict (Twilio's
  asynchronous AMD callback, the SIP carrier's local detector).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class MachineDetection(StrEnum):
    """What to do when a machine answers an outbound call."""

    OFF = "off"  # no detection: the agent talks to whoever answers
    HANGUP = "hangup"  # a machine: hang up at once (``machine_detected``)
    LEAVE_MESSAGE = "leave_message"  # a machine: wait for the beep, speak the message


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One call to place; built and recorded by the platform before the carrier dials."""

    call_id: str  # the platform's call id (uuid hex): the record's id from the start
    agent: str
    to_number: str  # E.164 for Twilio; a number or SIP URI user part for SIP
    from_number: str
    carrier: str  # registry name of the carrier placing it ("twilio", "sip")
    params: dict[str, str] = field(default_factory=dict)  # fill {{params.X}}
    machine_detection: MachineDetection = MachineDetection.OFF
    voicemail_message: str = ""
    campaign_id: str | None = None


Verdict = Literal["human", "machine", "unknown"]


@dataclass(slots=True)
class AnsweringMachine:
    """The answering-machine verdict for an outbound call, as a carrier event.

    ``greeting_ended`` is true once a machine's greeting is over (the beep, or the
    silence after it): the moment to speak a voicemail message. A carrier may send a
    first ``machine`` verdict with ``greeting_ended=False`` and a second one when the
    greeting ends.
    """

    verdict: Verdict
    greeting_ended: bool = False
    detail: str = ""  # the carrier's own words (Twilio ``AnsweredBy``, the detector's cue)
