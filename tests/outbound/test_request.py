"""What a dial request may hold, checked before anything is recorded or dialed."""

from __future__ import annotations

import pytest

from agentplatform.carriers.dialing import MachineDetection
from agentplatform.outbound.request import (
    MAX_PARAMS, DialRequest, machine_detection_of, number_problem, params_problem,
    request_problem,
)


@pytest.mark.parametrize("number", ["+15551234567", "+442071838750"])
def test_twilio_takes_e164_numbers(number):
    assert number_problem(number, "twilio", "to") is None


@pytest.mark.parametrize("number", ["5551234567", "+0123456789", "+1 555 123 4567", "+1555"])
def test_twilio_refuses_what_is_not_e164_naming_the_field(number):
    assert "to" in number_problem(number, "twilio", "to") and "E.164" in \
        number_problem(number, "twilio", "to")


def test_a_sip_trunk_takes_a_user_part_but_not_uri_syntax():
    assert number_problem("1001", "sip", "to") is None
    assert number_problem("+15551234567", "sip", "to") is None
    assert number_problem("1001@evil.example", "sip", "to") is not None
    assert number_problem("", "sip", "to") == "to is required"


def test_params_are_a_small_mapping_of_placeholder_names_to_text():
    assert params_problem({"name": "Ada", "slot_2": "9:30"}) is None
    assert "text" in params_problem({"name": 3})
    assert "params name" in params_problem({"first name": "Ada"})
    assert f"at most {MAX_PARAMS}" in params_problem({f"p{i}": "x" for i in range(MAX_PARAMS + 1)})
    assert "at most 500" in params_problem({"note": "x" * 501})
    assert "in all" in params_problem({f"p{i}": "x" * 400 for i in range(6)})
    assert params_problem(["name", "Ada"]) is not None


def test_leave_message_needs_a_voicemail_message():
    request = DialRequest(agent="a", to_number="+15551234567",
                          machine_detection=MachineDetection.LEAVE_MESSAGE)
    assert "voicemail_message" in request_problem(request, "twilio")
    fine = DialRequest(agent="a", to_number="+15551234567", voicemail_message="Call back.",
                       machine_detection=MachineDetection.LEAVE_MESSAGE)
    assert request_problem(fine, "twilio") is None


def test_machine_detection_names_its_choices_when_wrong():
    assert machine_detection_of(None) is MachineDetection.OFF
    assert machine_detection_of("hangup") is MachineDetection.HANGUP
    assert "off, hangup, leave_message" in machine_detection_of("voicemail")
