"""Shared plumbing for the speech factories: engine classes by name, URLs and keys.

Which class serves a catalog service is data: each factory keeps a map from the
catalog's ``engine`` name to ``"module:Class"``, imported on first use so that an
offline install never imports an HTTP engine's dependencies it does not use, and a
cloud-only deployment never loads a local model.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentplatform.config import Settings
from agentplatform.errors import CatalogError, CredentialsError


def engine_class(engines: dict[str, str], engine: str, kind: str) -> Any:
    """The class ``engines`` names for ``engine``; CatalogError if the catalog names an unknown one."""
    try:
        target = engines[engine]
    except KeyError:
        known = ", ".join(sorted(engines))
        raise CatalogError(f"unknown {kind} engine {engine!r}; this build has: {known}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def service_url(service: Any, settings: Settings) -> str:
    """The settings override named by the service (simulators, proxies), else its catalog URL."""
    override = getattr(settings, service.url_setting, "") if service.url_setting else ""
    return (override or service.url).rstrip("/")


def service_key(service: Any, settings: Settings, api_key: str | None) -> str:
    """The caller's key (an agent's own) if given, else the platform key the service names."""
    if api_key:
        return api_key
    key = getattr(settings, service.key_setting, "") if service.key_setting else ""
    if not key:
        raise CredentialsError(
            f"no key for {service.label}: set {service.key_setting.upper()} "
            "or credentials.api_key_env in the agent"
        )
    return key
