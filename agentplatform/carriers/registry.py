"""Which carriers exist: data, like ``realtime/sessions.py``'s ``ADAPTERS``.

A name maps to ``"module:Class"`` of a :class:`~agentplatform.carriers.plugin.Carrier`;
the module is imported only when the application builds its carriers, and each
class decides from the settings whether it is on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from agentplatform.carriers.plugin import Carrier, CarrierContext, PlatformServices
from agentplatform.config import Settings
from agentplatform.single_use import SingleUseStore

CARRIERS: dict[str, str] = {
    "twilio": "agentplatform.carriers.twilio.plugin:TwilioCarrier",
    "browser": "agentplatform.carriers.browser.plugin:BrowserCarrier",
    "sip": "agentplatform.carriers.sip.plugin:SipCarrier",
}


def carrier_class(name: str) -> type[Carrier]:
    """The class registered as ``name``; ``KeyError`` naming the known ones if none is."""
    try:
        target = CARRIERS[name]
    except KeyError:
        raise KeyError(f"no carrier named {name!r}; known: {', '.join(sorted(CARRIERS))}") \
            from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if getattr(cls, "name", None) != name:
        raise TypeError(f"carrier class {target} says its name is "
                        f"{getattr(cls, 'name', None)!r}, registered as {name!r}")
    return cls


def enabled_carriers(settings: Settings, single_use: SingleUseStore,
                     services: Callable[[], PlatformServices]) -> list[Carrier]:
    """Every registered carrier the settings turn on, each with its own context."""
    carriers: list[Carrier] = []
    for name in CARRIERS:
        cls = carrier_class(name)
        if cls.enabled(settings):
            carriers.append(cls(CarrierContext(carrier=name, settings=settings,
                                               single_use=single_use, services=services)))
    return carriers
