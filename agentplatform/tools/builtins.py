"""Built-in tools: end the call, transfer the call, press phone keys.

These only *decide*. Hanging up or transferring needs the carrier, and the
moment matters (let the goodbye finish playing first), so the decision goes
back to the bridge as an action and the bridge carries it out. The text
returned is what the model hears as the tool's result, so it tells the model
what happens next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentplatform.agents.spec import EndCallTool, SendDtmfTool, TransferCallTool
from agentplatform.carriers.dtmf import BadDtmf, validate_dtmf
from agentplatform.errors import ToolError


@dataclass(frozen=True, slots=True)
class EndCall:
    """Hang up once the model's current answer has finished playing."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    """Transfer the caller to ``number`` (E.164), the agent's ``destination``."""

    number: str
    destination: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SendDtmf:
    """Press ``digits`` (validated: ``0-9*#A-D`` and ``w``) on the call now; the
    bridge tells the model whether the carrier could."""

    digits: str


ToolAction = EndCall | Transfer | SendDtmf


def _reason(arguments: Mapping[str, Any]) -> str:
    reason = arguments.get("reason", "")
    return reason if isinstance(reason, str) else str(reason)


def end_call_spec_parameters() -> dict[str, Any]:
    """JSON schema of end_call's arguments: an optional reason, nothing else."""
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the call is ending."},
        },
        "additionalProperties": False,
    }


def transfer_spec_parameters(tool: TransferCallTool) -> dict[str, Any]:
    """JSON schema of transfer_call's arguments: one of the agent's destination
    names (the model never sees the numbers), and an optional reason."""
    return {
        "type": "object",
        "properties": {
            "destination": {
                "type": "string",
                "enum": list(tool.destinations),
                "description": "Who to transfer the caller to.",
            },
            "reason": {"type": "string", "description": "Why the caller is transferred."},
        },
        "required": ["destination"],
        "additionalProperties": False,
    }


def send_dtmf_spec_parameters() -> dict[str, Any]:
    """JSON schema of send_dtmf's arguments: the keys to press."""
    return {
        "type": "object",
        "properties": {
            "digits": {
                "type": "string",
                "pattern": "^[0-9*#A-Dw ]{1,64}$",
                "description": "Keys to press in order, e.g. \"1\" or \"123#\"; w waits half a second.",
            },
        },
        "required": ["digits"],
        "additionalProperties": False,
    }


def send_dtmf(tool: SendDtmfTool, arguments: Mapping[str, Any]) -> tuple[str, SendDtmf]:
    """Decide to press keys; a bad string is a ``ToolError`` saying what is allowed."""
    digits = arguments.get("digits")
    if not isinstance(digits, str):
        raise ToolError("digits must be a string of keys such as \"1\" or \"123#\"")
    try:
        keys = validate_dtmf(digits)
    except BadDtmf as exc:
        raise ToolError(str(exc)) from None
    return f"Pressed {' '.join(keys)}.", SendDtmf(keys)


def end_call(tool: EndCallTool, arguments: Mapping[str, Any]) -> tuple[str, EndCall]:
    """Decide to hang up; the text tells the model to say goodbye now."""
    return (
        "Ending the call after your goodbye. Say a short goodbye now.",
        EndCall(reason=_reason(arguments)),
    )


def transfer_call(tool: TransferCallTool, arguments: Mapping[str, Any]) -> tuple[str, Transfer]:
    """Decide to transfer to a named destination; an unknown name is a
    ``ToolError`` that lists the valid ones, so the model can ask or retry."""
    destination = arguments.get("destination")
    valid = ", ".join(tool.destinations)
    if not isinstance(destination, str) or destination not in tool.destinations:
        raise ToolError(f"unknown destination {destination!r}; valid destinations are: {valid}")
    return (
        f"Transferring the caller to {destination}. Tell them briefly that you are "
        "transferring them now.",
        Transfer(
            number=tool.destinations[destination],
            destination=destination,
            reason=_reason(arguments),
        ),
    )
