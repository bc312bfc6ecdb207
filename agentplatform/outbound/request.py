"""A request to place a call, as an API client, the CLI or a campaign states it, and
the checks it must pass before anything is recorded or dialed.

The checks are pure (no agent store, no carrier): what each field may hold.
Whether the agent exists and the carrier can dial is the dialer's question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentplatform.carriers.dialing import MachineDetection

# ``params`` fill the prompt's ``{{params.X}}`` and travel with the call to the carrier
# (Twilio: as <Parameter>s inside TwiML, which Twilio caps at 4000 characters), so they
# are bounded: names like placeholders, values short text.
MAX_PARAMS = 20
MAX_PARAM_VALUE_CHARS = 500
MAX_PARAMS_TOTAL_CHARS = 2000
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VOICEMAIL_CHARS = 1000

# What a number to dial looks like, per carrier: Twilio takes E.164 only; a SIP trunk
# takes the user part of a SIP URI (digits, a leading +, and the few characters an
# extension or IVR code may hold). Carriers not listed use the SIP rule.
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SIP_USER = re.compile(r"^\+?[0-9A-Za-z*#._-]{1,64}$")
NUMBER_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "twilio": (E164, "an E.164 number such as +15551234567"),
}
DEFAULT_NUMBER_RULE = (SIP_USER, "a number or SIP user part (digits, +, *, #, letters, . _ -)")


@dataclass(frozen=True, slots=True)
class DialRequest:
    """One call to place. ``carrier`` and ``from_number`` may be left empty: the
    dialer picks the default carrier and the agent's first phone number."""

    agent: str
    to_number: str
    from_number: str = ""
    carrier: str = ""
    params: dict[str, str] = field(default_factory=dict)
    machine_detection: MachineDetection = MachineDetection.OFF
    voicemail_message: str = ""
    campaign_id: str | None = None


def number_problem(number: str, carrier: str, what: str) -> str | None:
    """Why ``number`` cannot be dialed over ``carrier``, or ``None``."""
    pattern, described = NUMBER_RULES.get(carrier, DEFAULT_NUMBER_RULE)
    if not number:
        return f"{what} is required"
    if not pattern.fullmatch(number):
        return f"{what} {number[:70]!r} is not {described}"
    return None


def params_problem(params: Any) -> str | None:
    """Why ``params`` is not a small mapping of placeholder names to text, or ``None``."""
    if not isinstance(params, dict):
        return "params must be an object of names to text values"
    if len(params) > MAX_PARAMS:
        return f"params has {len(params)} entries; at most {MAX_PARAMS} are allowed"
    total = 0
    for name, value in params.items():
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            return (f"params name {str(name)[:70]!r} must be a letter or _ followed by "
                    "letters, digits or _ (at most 64)")
        if not isinstance(value, str):
            return f"params.{name} must be text, not {type(value).__name__}"
        if len(value) > MAX_PARAM_VALUE_CHARS:
            return f"params.{name} is {len(value)} characters; at most {MAX_PARAM_VALUE_CHARS}"
        total += len(name) + len(value)
    if total > MAX_PARAMS_TOTAL_CHARS:
        return f"params hold {total} characters in all; at most {MAX_PARAMS_TOTAL_CHARS}"
    return None


def machine_detection_of(value: Any) -> MachineDetection | str:
    """The ``MachineDetection`` named by ``value`` (default ``off``), or why not."""
    if value is None or value == "":
        return MachineDetection.OFF
    try:
        return MachineDetection(value)
    except ValueError:
        allowed = ", ".join(m.value for m in MachineDetection)
        return f"machine_detection {str(value)[:40]!r} is not one of {allowed}"


def request_problem(request: DialRequest, carrier: str) -> str | None:
    """The first thing wrong with ``request`` dialed over ``carrier``, or ``None``."""
    checks = (
        number_problem(request.to_number, carrier, "to"),
        number_problem(request.from_number, carrier, "from") if request.from_number else None,
        params_problem(request.params),
        _voicemail_problem(request),
    )
    return next((p for p in checks if p), None)


def _voicemail_problem(request: DialRequest) -> str | None:
    message = request.voicemail_message
    if not isinstance(message, str):
        return "voicemail_message must be text"
    if request.machine_detection is MachineDetection.LEAVE_MESSAGE and not message.strip():
        return "machine_detection leave_message needs a voicemail_message to leave"
    if len(message) > MAX_VOICEMAIL_CHARS:
        return f"voicemail_message is {len(message)} characters; at most {MAX_VOICEMAIL_CHARS}"
    return None
