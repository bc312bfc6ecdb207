"""Pure OpenAI Realtime build/parse functions, checked against the SDK's typed events."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import BaseModel, TypeAdapter

from agentplatform.realtime import openai_events as wire
from agentplatform.testing.typed_events import strict_validate
from agentplatform.realtime.base import HistoryItem, SessionSetup, ToolSpec, Usage

CLIENT_EVENT = TypeAdapter(RealtimeClientEvent)



def assert_client_event(event: dict[str, Any] | str) -> BaseModel:
    return strict_validate(CLIENT_EVENT, event)


def _setup(**kw: Any) -> SessionSetup:
    base: dict[str, Any] = {"model": "gpt-realtime", "instructions": "Be brief.",
                            "voice": "marin", "url": "wss://api.openai.com/v1/realtime",
                            "api_key": "sk-test"}
    base.update(kw)
    return SessionSetup(**base)


# ---------------------------------------------------------------- URLs and auth


def test_model_query_is_added_and_an_existing_query_kept() -> None:
    assert wire.with_model_query("wss://h/v1/realtime", "gpt-realtime") == \
        "wss://h/v1/realtime?model=gpt-realtime"
    assert wire.with_model_query("wss://h/v1/realtime?trace=1", "m") == \
        "wss://h/v1/realtime?trace=1&model=m"


def test_a_url_that_already_names_its_model_is_left_alone() -> None:
    url = "wss://h/openai/realtime?api-version=2025-04-01-preview&deployment=d"
    assert wire.with_model_query(url, "other") == url


def test_azure_ga_url_names_the_deployment_as_model_without_api_version() -> None:
    assert wire.azure_realtime_url("https://res.openai.azure.com/", "my-rt") == \
        "wss://res.openai.azure.com/openai/v1/realtime?model=my-rt"


def test_azure_preview_url_carries_api_version_and_deployment() -> None:
    assert wire.azure_realtime_url("https://res.openai.azure.com", "my-rt",
                                   "2025-04-01-preview") == \
        "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=my-rt"


def test_session_url_uses_the_azure_endpoint_and_advanced_deployment() -> None:
    setup = _setup(extra={"endpoint": "http://127.0.0.1:9", "api_version": ""},
                   advanced={"deployment": "prod-rt"})
    assert wire.session_url(setup) == "ws://127.0.0.1:9/openai/v1/realtime?model=prod-rt"


@pytest.mark.parametrize(
    ("auth", "extra", "expected"),
    [
        ("bearer", {}, {"Authorization": "Bearer sk-test"}),
        ("api-key", {}, {"api-key": "sk-test"}),
        ("api-key", {"azure_ad_token": "entra"}, {"Authorization": "Bearer entra"}),
    ],
)
def test_auth_headers_follow_the_auth_kind(auth: str, extra: dict, expected: dict) -> None:
    assert wire.auth_headers(_setup(auth=auth, extra=extra)) == expected


# ---------------------------------------------------------------- session.update


def test_session_update_carries_the_agent_settings_in_ga_shape() -> None:
    setup = _setup(
        max_output_tokens=512, temperature=0.9,
        turn_detection={"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
                        "silence_duration_ms": 700, "eagerness": "auto"},
        tools=[ToolSpec("lookup", "Find an order.", {"type": "object", "properties": {}})],
    )
    session = wire.build_session(setup)
    assert_client_event(wire.session_update(session))
    assert session["type"] == "realtime"
    assert session["instructions"] == "Be brief."
    assert session["output_modalities"] == ["audio"]
    assert session["max_output_tokens"] == 512
    assert "temperature" not in session
    audio_in, audio_out = session["audio"]["input"], session["audio"]["output"]
    assert audio_in["format"] == audio_out["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["turn_detection"] == {
        "type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
        "silence_duration_ms": 700, "create_response": True, "interrupt_response": True}
    assert audio_in["transcription"] == {"model": wire.DEFAULT_TRANSCRIPTION_MODEL}
    assert audio_out["voice"] == "marin"
    assert session["tools"] == [{"type": "function", "name": "lookup",
                                 "description": "Find an order.",
                                 "parameters": {"type": "object", "properties": {}}}]
    assert session["tool_choice"] == "auto"


def test_ulaw_sessions_use_pcmu_both_ways() -> None:
    session = wire.build_session(_setup(audio_format="g711_ulaw"))
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert_client_event(wire.session_update(session))


def test_semantic_vad_sends_eagerness_and_no_thresholds() -> None:
    td = wire.build_session(_setup(turn_detection={
        "type": "semantic_vad", "eagerness": "high", "threshold": 0.5}))["audio"]["input"][
        "turn_detection"]
    assert td == {"type": "semantic_vad", "eagerness": "high", "create_response": True,
                  "interrupt_response": True}


def test_turn_detection_none_means_manual_commits() -> None:
    session = wire.build_session(_setup(turn_detection={"type": "none"}))
    assert session["audio"]["input"]["turn_detection"] is None
    assert_client_event(wire.session_update(session))


def test_text_modality_and_transcription_override() -> None:
    session = wire.build_session(_setup(output_modality="text",
                                        extra={"transcription_model": "my-asr"}))
    assert session["output_modalities"] == ["text"]
    assert session["audio"]["input"]["transcription"] == {"model": "my-asr"}
    no_asr = wire.build_session(_setup(extra={"transcription_model": None}))
    assert "transcription" not in no_asr["audio"]["input"]


def test_advanced_json_merges_last_and_overrides_nested_values() -> None:
    setup = _setup(advanced={"audio": {"output": {"voice": "cedar", "speed": 1.2}},
                             "instructions": "Override.", "deployment": "not-a-field"})
    session = wire.build_session(setup)
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                          "voice": "cedar", "speed": 1.2}
    assert session["instructions"] == "Override."
    assert "deployment" not in session
    assert_client_event(wire.session_update(session))


def test_advanced_json_still_under_its_provider_key_is_unwrapped() -> None:
    session = wire.build_session(_setup(advanced={"openai_realtime": {"truncation": "disabled"}}))
    assert session["truncation"] == "disabled"


def test_deep_merge_does_not_mutate_its_inputs() -> None:
    base = {"a": {"b": 1}}
    merged = wire.deep_merge(base, {"a": {"c": 2}, "d": [1]})
    assert merged == {"a": {"b": 1, "c": 2}, "d": [1]}
    assert base == {"a": {"b": 1}}


# ---------------------------------------------------------------- other client events


def test_audio_append_is_a_valid_event_with_the_bytes_base64() -> None:
    text = wire.audio_append(b"\x01\x02\x03")
    model = assert_client_event(text)
    assert base64.b64decode(model.audio) == b"\x01\x02\x03"


def test_every_other_client_event_validates_against_the_sdk() -> None:
    events = [
        wire.user_text_item("hello"),
        wire.assistant_text_item("hi there"),
        wire.history_item(HistoryItem(role="assistant", text="earlier")),
        wire.response_create(),
        wire.response_create("Say goodbye."),
        wire.tool_output("call_1", '{"ok": true}'),
        wire.truncate("item_1", 1234),
        wire.response_cancel(),
    ]
    for event in events:
        assert_client_event(event)
    assert events[2]["item"]["role"] == "assistant"
    assert events[2]["item"]["content"][0]["type"] == "output_text"
    assert events[4]["response"] == {"instructions": "Say goodbye."}


def test_truncate_never_sends_a_negative_time() -> None:
    assert wire.truncate("i", -5)["audio_end_ms"] == 0


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"no": "type"}', b'{"type": 3}'])
def test_malformed_server_events_parse_to_none(raw: bytes) -> None:
    assert wire.parse(raw) is None


def test_usage_maps_token_details() -> None:
    response = {"usage": {
        "input_tokens": 160, "output_tokens": 70,
        "input_token_details": {"text_tokens": 100, "audio_tokens": 60, "cached_tokens": 40},
        "output_token_details": {"text_tokens": 10, "audio_tokens": 60}}}
    assert wire.usage(response) == Usage(input_text=100, input_audio=60, input_cached=40,
                                         output_text=10, output_audio=60)
    assert wire.usage({}) is None


def test_error_fields_fall_back_to_the_error_type() -> None:
    assert wire.error_fields({"error": {"type": "server_error", "message": "boom"}}) == \
        ("server_error", "boom")
    assert wire.error_fields({"error": {"type": "invalid_request_error",
                                        "code": "session_expired", "message": "m"}}) == \
        ("session_expired", "m")


def test_heard_text_keeps_the_share_of_words_the_caller_heard() -> None:
    text = "one two three four five six seven eight"
    assert wire.heard_text(text, 500, 1000) == "one two three four …"
    assert wire.heard_text(text, 1000, 1000) == text
    assert wire.heard_text(text, 0, 1000) == "…"
