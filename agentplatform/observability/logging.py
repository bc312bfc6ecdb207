"""Structured logs with the call id on every line.

The call id lives in a ``contextvars.ContextVar``. ``bind_call`` sets it in the
task that runs a call; asyncio copies the context into every task that call
spawns (model loop, carrier loop, tools), and ``asyncio.to_thread`` carries it
into worker threads — so every line logged on the call's behalf, by any module,
carries the id with no parameter threaded through. A logging ``Filter`` (not the
formatter) stamps it on the record, so it works with any handler and format.

``LOG_FORMAT=json`` gives one JSON object per line (for a log pipeline); the text
format puts ``call=<id>`` after the level.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="")
carrier_call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "carrier_call_id", default="")
agent_var: contextvars.ContextVar[str] = contextvars.ContextVar("agent", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s [call=%(call_id)s] %(name)s: %(message)s"


@contextlib.contextmanager
def bind_call(call_id: str = "", *, carrier_call_id: str = "", agent: str = "") -> Iterator[None]:
    """Every log line inside this block (and tasks spawned in it) names the call."""
    tokens = []
    for var, value in ((call_id_var, call_id), (carrier_call_id_var, carrier_call_id),
                       (agent_var, agent)):
        if value:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_call_id(call_id: str) -> None:
    """Name the call for the rest of the current task (its id is minted mid-setup)."""
    call_id_var.set(call_id)


class CallContextFilter(logging.Filter):
    """Stamps ``call_id``, ``carrier_call_id`` and ``agent`` on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        carrier_call_id = carrier_call_id_var.get()
        # Before the platform id is minted (webhook, admission) the carrier's id names it;
        # outside any call's task (a SIP datagram, a webhook, a writer thread) a line
        # that says "call <id>: …" names its call itself.
        record.call_id = call_id_var.get() or carrier_call_id or _named_call(record) or "-"
        record.carrier_call_id = carrier_call_id
        record.agent = agent_var.get()
        return True


def _named_call(record: logging.LogRecord) -> str:
    """The id of a line logged as ``log.x("call %s…", call_id, …)``, else ''."""
    if isinstance(record.msg, str) and record.msg.startswith("call %s") \
            and isinstance(record.args, tuple) and record.args:
        return str(record.args[0])[:64]
    return ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = getattr(record, "call_id", "-")
        carrier_call_id = getattr(record, "carrier_call_id", "")
        if call_id not in ("-", carrier_call_id):
            entry["call_id"] = call_id
        for key, value in (("carrier_call_id", carrier_call_id),
                           ("agent", getattr(record, "agent", ""))):
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "info", fmt: str = "text") -> logging.Handler:
    """Install one stream handler on the root logger with the call-id filter.

    Replaces handlers a previous call installed (not others), so calling it twice
    does not print every line twice."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_agentplatform", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._agentplatform = True  # type: ignore[attr-defined]
    handler.addFilter(CallContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
