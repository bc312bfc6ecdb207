"""Per-call conversation data in prompts and greetings: ``{{caller_number}}``.

Placeholders are checked when an agent is saved (an unknown name is an error),
and filled in when a call starts. A missing stream parameter at call time
becomes an empty string and a log line: a caller should never hear a crash
because an optional parameter was not sent.

Names:
    caller_number, called_number, call_id, agent_name   the call
    local_date (YYYY-MM-DD), local_time (HH:MM),
    local_datetime (YYYY-MM-DD HH:MM ZONE), weekday     now, in the agent's time zone
    params.<name>                                       the stream's custom parameters
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

# {{ name }}: whitespace allowed inside the braces; anything but braces is captured
# so a misspelt or spaced-out name is reported rather than silently ignored.
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PARAM = re.compile(r"^params\.([A-Za-z0-9_-]+)$")
PARAMS_PREFIX = "params."


@dataclass(slots=True)
class CallContext:
    """What is known about a call when its prompt and greeting are rendered."""

    caller_number: str = ""
    called_number: str = ""
    call_id: str = ""
    agent_name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    timezone: str | None = None  # IANA name; None means UTC

    def local_now(self) -> datetime:
        """``now`` in the call's zone; a naive ``now`` is taken to be UTC."""
        now = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
        return now.astimezone(ZoneInfo(self.timezone) if self.timezone else UTC)


def _local_date(ctx: CallContext) -> str:
    return ctx.local_now().strftime("%Y-%m-%d")


def _local_time(ctx: CallContext) -> str:
    return ctx.local_now().strftime("%H:%M")


def _local_datetime(ctx: CallContext) -> str:
    local = ctx.local_now()
    return f"{local:%Y-%m-%d %H:%M} {ctx.timezone or 'UTC'}"


def _weekday(ctx: CallContext) -> str:
    return ctx.local_now().strftime("%A")


# Placeholder name -> how to compute it for a call. The keys are the whole
# vocabulary validation accepts (plus params.<name>).
_VALUES: dict[str, Callable[[CallContext], str]] = {
    "caller_number": lambda c: c.caller_number,
    "called_number": lambda c: c.called_number,
    "call_id": lambda c: c.call_id,
    "agent_name": lambda c: c.agent_name,
    "local_date": _local_date,
    "local_time": _local_time,
    "local_datetime": _local_datetime,
    "weekday": _weekday,
}

KNOWN_NAMES: tuple[str, ...] = tuple(_VALUES)


def find_placeholders(text: str | None) -> list[str]:
    """Every placeholder name in ``text``, in order of first appearance, without repeats."""
    if not text:
        return []
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(text)))


def is_known(name: str) -> bool:
    return name in _VALUES or _PARAM.match(name) is not None


def unknown_placeholders(text: str | None) -> list[str]:
    """Placeholder names in ``text`` that :func:`render` would not know how to fill."""
    return [name for name in find_placeholders(text) if not is_known(name)]


def render(text: str, context: CallContext) -> str:
    """Fill every placeholder in ``text`` for one call.

    A ``params.x`` the stream did not send renders empty (logged); an unknown
    name, which validation rejects, is left as written (logged) rather than raising.
    """
    if "{{" not in text:
        return text
    cache: dict[str, str] = {}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in cache:
            cache[name] = _value(name, context, match.group(0))
        return cache[name]

    return _PLACEHOLDER.sub(fill, text)


def _value(name: str, context: CallContext, written: str) -> str:
    compute = _VALUES.get(name)
    if compute is not None:
        return compute(context)
    param = _PARAM.match(name)
    if param is not None:
        key = param.group(1)
        if key in context.params:
            return str(context.params[key])
        log.warning("call %s: placeholder {{%s}} has no value; rendered empty",
                    context.call_id, name)
        return ""
    log.warning("call %s: unknown placeholder %s left as written", context.call_id, written)
    return written


def context_values(context: CallContext) -> dict[str, str]:
    """Every placeholder's value for a call, params included (for logs or a tool's payload)."""
    values = {name: compute(context) for name, compute in _VALUES.items()}
    for key, value in context.params.items():
        values[f"{PARAMS_PREFIX}{key}"] = str(value)
    return values
