"""How a call record reads on its page: an event's detail as labelled rows, the end
reason said once, and each transcript line's time since the call started.

The record keeps machine-shaped data (``{"connect_ms": 412.5}``, ``caller_hung_up``);
these turn it into what a person scans, without changing what is stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

# Key suffixes whose numbers are a unit the reader should see.
_UNITS = (("_ms", "ms"), ("_seconds", "s"), ("_s", "s"), ("_bytes", "bytes"), ("_usd", "USD"))


def label(key: str) -> str:
    """``speech_stopped_ms`` → ``Speech stopped``; the unit goes with the value."""
    for suffix, _ in _UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def value_text(key: str, value: Any) -> str:
    """A value as text: numbers rounded with their unit, lists and mappings as JSON."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, int | float):
        unit = next((u for suffix, u in _UNITS if key.endswith(suffix)), "")
        number = f"{value:,.0f}" if unit == "ms" or float(value).is_integer() else f"{value:,.2f}"
        return f"{number} {unit}".strip()
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def detail_rows(detail: Any) -> list[tuple[str, str]]:
    """An event's detail as (label, value) rows, in the order it was written."""
    if isinstance(detail, Mapping):
        return [(label(str(k)), value_text(str(k), v)) for k, v in detail.items()]
    if detail in (None, "", [], {}):
        return []
    return [("Detail", value_text("", detail))]


def end_text(reason: str | None, detail: str | None) -> tuple[str, str]:
    """The end reason in words, and the detail only when it says something more
    (``caller_hung_up`` with the detail "caller hung up" reads once)."""
    words = (reason or "still live").replace("_", " ")
    extra = (detail or "").strip()
    if _plain(extra) == _plain(words):
        extra = ""
    return words, extra


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace(".", " ").split())


def offset_text(seconds: float) -> str:
    """``83.4`` → ``1:23.4``."""
    minutes, rest = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def since_start(started_at: datetime, stamps: Sequence[datetime]) -> list[float]:
    """Seconds from the call's start to each stamp (when a transcript line was
    recorded), never negative."""
    return [max((t - started_at).total_seconds(), 0.0) for t in stamps]
