"""A new campaign from what its creator sent (the API's JSON or form, the admin's
form): the settings checked field by field, the contacts parsed off the event loop,
then everything stored in one transaction.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from agentplatform.agents.store import AgentStore
from agentplatform.campaigns import store
from agentplatform.campaigns.contacts_csv import (
    ContactRow,
    ContactsInvalid,
    parse_csv,
    parse_items,
)
from agentplatform.campaigns.hours import is_time_zone, parse_hhmm
from agentplatform.carriers.dialing import MachineDetection
from agentplatform.carriers.plugin import Carrier
from agentplatform.outbound.request import (
    DialRequest,
    machine_detection_of,
    request_problem,
)

# The carrier a campaign uses when it names none: the first enabled one that can dial.
CARRIER_ORDER = ("twilio", "sip")
MAX_NAME = 200
# (low, high, default) of each number a campaign is paced by.
NUMBERS: dict[str, tuple[float, float, float]] = {
    "calls_per_second": (0.01, 50.0, 1.0),
    "max_concurrent": (1, 1000, 1),
    "max_attempts": (1, 10, 3),
    "retry_backoff_seconds": (10, 7 * 86_400, 600),
}
WHOLE = frozenset({"max_concurrent", "max_attempts", "retry_backoff_seconds"})


class CampaignInvalid(ValueError):
    """The campaign was refused: ``fields`` maps a field to what is wrong with it;
    ``rows`` lists the contacts' problems by line."""

    def __init__(self, fields: dict[str, str], rows: ContactsInvalid | None = None) -> None:
        self.fields = fields
        self.rows = rows
        parts = [f"{k}: {v}" for k, v in fields.items()] + ([str(rows)] if rows else [])
        super().__init__("; ".join(parts))

    def as_dict(self) -> dict[str, Any]:
        return {"error": "the campaign was not created", "fields": self.fields,
                "rows": self.rows.as_list() if self.rows else []}


def _text(values: Mapping[str, Any], key: str, default: str = "") -> str:
    value = values.get(key)
    return default if value is None else str(value).strip()


def _number(values: Mapping[str, Any], key: str, errors: dict[str, str]) -> float:
    low, high, default = NUMBERS[key]
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        errors[key] = f"{str(raw)[:40]!r} is not a number"
        return default
    if not math.isfinite(value) or not low <= value <= high or (
            key in WHOLE and value != int(value)):
        kind = "a whole number" if key in WHOLE else "a number"
        errors[key] = f"must be {kind} from {low:g} to {high:g}"
        return default
    return value


def pick_carrier(name: str, carriers: Sequence[Carrier]) -> tuple[str, str | None]:
    """``(carrier, problem)``: the named carrier, or the first enabled one that can
    dial; ``problem`` says why it cannot place calls."""
    enabled = {c.name: c for c in carriers}
    if name:
        carrier = enabled.get(name)
        if carrier is None:
            return name, (f"no carrier named {name[:32]!r} is enabled (enabled: "
                          f"{', '.join(sorted(enabled)) or 'none'})")
        return name, carrier.dial_problem()
    for candidate in [*CARRIER_ORDER, *sorted(set(enabled) - set(CARRIER_ORDER))]:
        if candidate in enabled and enabled[candidate].dial_problem() is None:
            return candidate, None
    return "", "no enabled carrier can place calls (set up Twilio or a SIP trunk)"


def campaign_settings(values: Mapping[str, Any], agents: AgentStore,
                      carriers: Sequence[Carrier], sample_number: str | None
                      ) -> store.CampaignSettings:
    """Check every field; ``CampaignInvalid`` naming each bad one."""
    errors: dict[str, str] = {}
    name = _text(values, "name")
    if not name or len(name) > MAX_NAME:
        errors["name"] = f"a name of 1 to {MAX_NAME} characters is required"
    agent_name = _text(values, "agent")
    loaded = agents.get(agent_name)
    if loaded is None:
        errors["agent"] = f"no agent named {agent_name[:64]!r} is loaded"
    carrier, problem = pick_carrier(_text(values, "carrier"), carriers)
    if problem:
        errors["carrier"] = problem
    from_number = _text(values, "from", _text(values, "from_number"))
    if not from_number and loaded is not None and not loaded.spec.phone_numbers:
        errors["from"] = f"required: agent {agent_name} has no phone_numbers to call from"
    detection = machine_detection_of(values.get("machine_detection"))
    if not isinstance(detection, MachineDetection):  # why not, as text
        errors["machine_detection"] = detection
    voicemail = _text(values, "voicemail_message")
    hours = {}
    for key, default in (("hours_start", "09:00"), ("hours_end", "20:00")):
        hours[key] = _text(values, key, default) or default
        try:
            parse_hhmm(hours[key])
        except ValueError as exc:
            errors[key] = str(exc)
    zone = _text(values, "default_time_zone", "UTC") or "UTC"
    if not is_time_zone(zone):
        errors["default_time_zone"] = f"{zone[:60]!r} is not an IANA time zone " \
                                      "(e.g. America/New_York)"
    paced = {key: _number(values, key, errors) for key in NUMBERS}
    agent_limit = loaded.spec.limits.max_concurrent_calls if loaded is not None else None
    if agent_limit and paced["max_concurrent"] > agent_limit:
        errors["max_concurrent"] = (f"at most the agent's max_concurrent_calls "
                                    f"({agent_limit})")
    if not errors and sample_number is not None and loaded is not None \
            and isinstance(detection, MachineDetection):
        # What the dial service will check on every call, checked once up front.
        problem = request_problem(DialRequest(
            agent=agent_name, to_number=sample_number, from_number=from_number,
            carrier=carrier, machine_detection=detection, voicemail_message=voicemail),
            carrier)
        if problem:
            errors["from" if problem.startswith("from") else "voicemail_message"] = problem
    start = values.get("start", True)
    if errors:
        raise CampaignInvalid(errors)
    return store.CampaignSettings(
        name=name, agent=agent_name, carrier=carrier, from_number=from_number,
        machine_detection=MachineDetection(detection).value, voicemail_message=voicemail,
        hours_start=hours["hours_start"], hours_end=hours["hours_end"],
        default_time_zone=zone, calls_per_second=paced["calls_per_second"],
        max_concurrent=int(paced["max_concurrent"]), max_attempts=int(paced["max_attempts"]),
        retry_backoff_seconds=int(paced["retry_backoff_seconds"]),
        start=start not in (False, "false", "0", "no", "off", ""))


async def create_campaign(engine: Engine, agents: AgentStore, carriers: Sequence[Carrier],
                          values: Mapping[str, Any], *, csv_data: bytes | None = None,
                          items: object = None) -> tuple[str, int]:
    """Check, parse and store; returns ``(campaign id, contacts)``. Raises
    ``CampaignInvalid`` with every field and row problem found."""
    await agents.refresh_async()
    zone = _text(values, "default_time_zone", "UTC") or "UTC"
    zone = zone if is_time_zone(zone) else "UTC"
    rows: list[ContactRow] = []
    rows_invalid: ContactsInvalid | None = None
    try:
        if csv_data is not None:
            rows = await asyncio.to_thread(parse_csv, csv_data, zone)
        else:
            rows = await asyncio.to_thread(parse_items, items, zone)
    except ContactsInvalid as exc:
        rows_invalid = exc
    try:
        settings = campaign_settings(values, agents, carriers,
                                     rows[0].number if rows else None)
    except CampaignInvalid as exc:
        raise CampaignInvalid(exc.fields, rows_invalid) from None
    if rows_invalid is not None:
        raise CampaignInvalid({}, rows_invalid)
    campaign_id = await asyncio.to_thread(store.create_campaign, engine, settings, rows)
    return campaign_id, len(rows)
