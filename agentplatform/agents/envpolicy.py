"""Which environment variables an agent file may name.

An agent file names variables (``headers_from_env``, ``credentials.api_key_env``,
``credentials.endpoint_env``, ``cascade.llm.api_key_env``) whose values the server then
sends somewhere: to a webhook URL or a chat endpoint the file itself chooses, or as a
provider key or endpoint whose failures end up in call records. Whoever can edit an
agent file must not be able to pick a server secret that way. So the operator decides:

* a variable may be named if it starts with ``TOOL_SECRET_`` or is listed in the
  ``TOOL_ENV_ALLOWLIST`` setting (comma-separated names);
* the platform's own settings are never allowed, even when listed: every field of
  ``Settings`` under its environment name (provider keys, ``SESSION_SECRET``,
  ``ADMIN_PASSWORD_HASH``, ``DATABASE_URL``...), and anything starting with ``AWS_`` or
  ``TWILIO_``. Settings are read case-insensitively, so the check is too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache

from agentplatform.config import Settings
from agentplatform.errors import CredentialsError

ALLOWED_PREFIX = "TOOL_SECRET_"
NEVER_PREFIXES = ("AWS_", "TWILIO_")


@lru_cache(maxsize=1)
def platform_variables() -> frozenset[str]:
    """Upper-cased environment names of every platform setting."""
    names: set[str] = set()
    for field_name, info in Settings.model_fields.items():
        names.add(field_name.upper())
        if isinstance(info.validation_alias, str):
            names.add(info.validation_alias.upper())
    return frozenset(names)


def allowlist(settings: Settings) -> frozenset[str]:
    """The names in ``TOOL_ENV_ALLOWLIST``."""
    return parse_allowlist(settings.tool_env_allowlist)


def parse_allowlist(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def refusal(variable: str, allowed: Iterable[str]) -> str | None:
    """Why an agent file may not name ``variable``, or None when it may."""
    upper = variable.upper()
    if upper in platform_variables() or upper.startswith(NEVER_PREFIXES):
        return (f"{variable} is one of the platform's own settings; an agent file may "
                "never read it")
    if variable.startswith(ALLOWED_PREFIX) or variable in set(allowed):
        return None
    return (f"{variable} is not an allowed variable: name one starting with "
            f"{ALLOWED_PREFIX}, or have the operator add it to TOOL_ENV_ALLOWLIST")


def read_allowed(variable: str, settings: Settings, *, field: str) -> str:
    """The value of ``variable`` named by an agent file at ``field``, read at call time.

    Validation already refuses a name the operator did not allow; this refuses again
    where the value is used, so a file that skipped validation (written straight to
    disk, or checked under other settings) still cannot reach a server secret.
    """
    why = refusal(variable, allowlist(settings))
    if why is not None:
        raise CredentialsError(f"{field}: {why}")
    return os.environ.get(variable, "")
