"""Twilio's plug-in: which call statuses end a call at the carrier."""

from __future__ import annotations

import pytest

from agentplatform.carriers.plugin import CarrierContext
from agentplatform.carriers.twilio.plugin import TwilioCarrier
from agentplatform.config import Settings
from agentplatform.single_use import MemorySingleUse


class Services:
    def __init__(self) -> None:
        self.finished: list[str] = []

    def call_finished(self, carrier_call_id: str) -> None:
        self.finished.append(carrier_call_id)


def carrier() -> tuple[TwilioCarrier, Services]:
    services = Services()
    context = CarrierContext(carrier="twilio", settings=Settings(_env_file=None),
                             single_use=MemorySingleUse(), services=lambda: services)
    return TwilioCarrier(context), services


@pytest.mark.parametrize("status", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_a_final_status_tells_the_platform_the_call_is_over(status: str) -> None:
    twilio, services = carrier()
    twilio.on_call_status("CA1", status)
    assert services.finished == ["CA1"]


@pytest.mark.parametrize("status", ["queued", "ringing", "in-progress"])
def test_a_status_while_the_call_goes_on_changes_nothing(status: str) -> None:
    twilio, services = carrier()
    twilio.on_call_status("CA1", status)
    assert services.finished == []


def test_twilio_paths_are_public_and_exempt_from_the_browser_origin_rule() -> None:
    assert TwilioCarrier.public_paths == ("/twilio/",)
    assert TwilioCarrier.server_paths == ("/twilio/",)
