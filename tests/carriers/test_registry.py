"""The carrier registry: names to plug-in classes, each deciding from the settings."""

from __future__ import annotations

import pytest

from agentplatform.carriers import registry
from agentplatform.carriers.browser.plugin import BrowserCarrier
from agentplatform.carriers.plugin import Carrier
from agentplatform.carriers.sip.plugin import SipCarrier
from agentplatform.carriers.twilio.plugin import TwilioCarrier
from agentplatform.config import Settings
from agentplatform.single_use import MemorySingleUse


class Misnamed(Carrier):
    name = "something-else"


def test_the_twilio_browser_and_sip_carriers_are_registered_under_their_names() -> None:
    assert registry.carrier_class("twilio") is TwilioCarrier
    assert registry.carrier_class("browser") is BrowserCarrier
    assert registry.carrier_class("sip") is SipCarrier


def test_an_unknown_carrier_name_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no carrier named 'fax'; known: .*twilio"):
        registry.carrier_class("fax")


def test_a_class_registered_under_another_name_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(registry.CARRIERS, "fake", f"{__name__}:Misnamed")
    with pytest.raises(TypeError, match="registered as 'fake'"):
        registry.carrier_class("fake")


def test_the_sip_trunk_is_off_until_sip_listen_is_set() -> None:
    names = lambda settings: [c.name for c in registry.enabled_carriers(  # noqa: E731
        settings, MemorySingleUse(), lambda: None)]  # type: ignore[arg-type,return-value]
    assert "sip" not in names(Settings(_env_file=None))
    assert "sip" in names(Settings(_env_file=None, sip_listen="127.0.0.1:0"))


def test_each_enabled_carrier_gets_a_context_bound_to_its_name() -> None:
    carriers = registry.enabled_carriers(Settings(_env_file=None), MemorySingleUse(),
                                         lambda: None)  # type: ignore[arg-type,return-value]
    assert {c.name: c.context.carrier for c in carriers} == {"twilio": "twilio",
                                                             "browser": "browser"}
