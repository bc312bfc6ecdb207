"""Check wire events against a vendor SDK's typed models, strictly.

SDK models usually allow extra fields, so plain validation would accept a misspelt
key. ``strict_validate`` parses the JSON strictly and then reports every field the
typed model did not declare, so a test fails on a wrong name as well as a wrong type.
Only pydantic is needed here; the caller passes the SDK's ``TypeAdapter``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter


def undeclared_fields(obj: Any, path: str = "$") -> list[str]:
    """Dotted paths of every field present in ``obj`` that its model does not declare."""
    found: list[str] = []
    if isinstance(obj, BaseModel):
        found += [f"{path}.{key}" for key in (obj.model_extra or {})]
        for name in type(obj).model_fields:
            found += undeclared_fields(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += undeclared_fields(value, f"{path}[{i}]")
    return found


def strict_validate(adapter: TypeAdapter[Any], event: dict[str, Any] | str | bytes,
                    allowed: Iterable[str] = ()) -> Any:
    """Validate ``event`` strictly; raise ``AssertionError`` naming undeclared fields."""
    raw = event if isinstance(event, bytes) else (
        event.encode() if isinstance(event, str) else orjson.dumps(event))
    model = adapter.validate_json(raw, strict=True)
    unexpected = [f for f in undeclared_fields(model) if f not in set(allowed)]
    if unexpected:
        raise AssertionError(f"undeclared fields {unexpected} in {raw[:200]!r}")
    return model
