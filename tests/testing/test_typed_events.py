"""Strict checks against typed SDK models catch misspelt keys, not only wrong types."""

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter, ValidationError

from agentplatform.testing.typed_events import strict_validate, undeclared_fields

CLIENT_EVENT = TypeAdapter(RealtimeClientEvent)
TRUNCATE = {"type": "conversation.item.truncate", "item_id": "item_1",
            "content_index": 0, "audio_end_ms": 640}


def test_a_valid_event_passes_and_returns_the_typed_model():
    model = strict_validate(CLIENT_EVENT, TRUNCATE)
    assert model.audio_end_ms == 640
    assert undeclared_fields(model) == []


def test_a_misspelt_field_is_named():
    with pytest.raises(AssertionError, match=r"\$\.audio_end_msec"):
        strict_validate(CLIENT_EVENT, {**TRUNCATE, "audio_end_msec": 1})


def test_allowed_extras_pass_and_wrong_types_fail():
    strict_validate(CLIENT_EVENT, {**TRUNCATE, "note": "x"}, allowed={"$.note"})
    with pytest.raises(ValidationError):
        strict_validate(CLIENT_EVENT, {**TRUNCATE, "audio_end_ms": "640"})
