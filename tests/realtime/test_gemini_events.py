"""Gemini Live wire messages: what we build validates against the google-genai SDK's
own models, and what we parse comes out normalized."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

import pytest
from google.genai import types

from agentplatform.realtime import gemini_events as wire
from agentplatform.realtime.base import HistoryItem, SessionSetup, ToolSpec, Usage


def validate_client_message(message: dict[str, Any]) -> types.LiveClientMessage:
    """Check camelCase wire JSON against the SDK (its models forbid unknown fields).

    The SDK's ``LiveClientSetup`` type lacks ``realtimeInputConfig`` although its
    converters put that key on the wire, so that part is checked on its own type.
    """
    message = json.loads(json.dumps(message))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the SDK only warns about unknown enum values
        setup = message.get("setup")
        if isinstance(setup, dict) and "realtimeInputConfig" in setup:
            types.RealtimeInputConfig.model_validate(setup.pop("realtimeInputConfig"))
        return types.LiveClientMessage.model_validate(message)


def make_setup(**overrides: Any) -> SessionSetup:
    values: dict[str, Any] = {
        "model": "gemini-2.5-flash-native-audio-preview-12-2025",
        "instructions": "You answer the phone for a bakery.",
        "voice": "Kore",
        "temperature": 0.6,
        "max_output_tokens": 512,
        "turn_detection": {
            "type": "server_vad", "threshold": 0.3, "prefix_padding_ms": 200,
            "silence_duration_ms": 700, "eagerness": "auto",
        },
        "tools": [
            ToolSpec(
                "order_status", "Look up an order.",
                {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"order_id": {"type": "string", "description": "The id.", "const": "x"}},
                    "required": ["order_id"],
                },
            ),
            ToolSpec("hang_up", "End the call.", {"type": "object", "properties": {}}),
        ],
    }
    values.update(overrides)
    return SessionSetup(**values)


def test_setup_carries_model_voice_instructions_tools_and_session_options() -> None:
    message = wire.build_setup(make_setup())
    body = message["setup"]
    assert body["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
    gen = body["generationConfig"]
    assert gen["responseModalities"] == ["AUDIO"]
    assert gen["temperature"] == 0.6
    assert gen["maxOutputTokens"] == 512
    assert gen["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    assert body["systemInstruction"] == {"parts": [{"text": "You answer the phone for a bakery."}]}
    decls = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == ["order_status", "hang_up"]
    assert decls[0]["parameters"] == {
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "The id."}},
        "required": ["order_id"],
    }
    assert "parameters" not in decls[1]
    assert body["inputAudioTranscription"] == {} and body["outputAudioTranscription"] == {}
    assert body["sessionResumption"] == {}
    assert "slidingWindow" in body["contextWindowCompression"]
    parsed = validate_client_message(message)
    assert parsed.setup is not None and parsed.setup.model == body["model"]


def test_setup_with_a_handle_asks_to_resume() -> None:
    message = wire.build_setup(make_setup(), resume_handle="h-123")
    assert message["setup"]["sessionResumption"] == {"handle": "h-123"}
    validate_client_message(message)


def test_setup_leaves_out_what_the_agent_does_not_set() -> None:
    body = wire.build_setup(
        make_setup(voice=None, temperature=None, max_output_tokens=None, tools=[], instructions="")
    )["setup"]
    assert body["generationConfig"] == {"responseModalities": ["AUDIO"]}
    assert "tools" not in body and "systemInstruction" not in body


def test_advanced_settings_merge_last_and_keep_siblings() -> None:
    advanced = {
        "generationConfig": {"temperature": 0.1, "thinkingConfig": {"thinkingBudget": 0}},
        "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 250}},
        "contextWindowCompression": {"triggerTokens": 20000},
    }
    message = wire.build_setup(make_setup(advanced=advanced))
    body = message["setup"]
    assert body["generationConfig"]["temperature"] == 0.1
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    assert body["generationConfig"]["maxOutputTokens"] == 512
    aad = body["realtimeInputConfig"]["automaticActivityDetection"]
    assert aad["silenceDurationMs"] == 250
    assert aad["prefixPaddingMs"] == 200
    assert body["contextWindowCompression"] == {"triggerTokens": 20000, "slidingWindow": {}}
    validate_client_message(message)


def test_deep_merge_does_not_touch_its_inputs() -> None:
    base = {"a": {"b": 1}}
    wire.deep_merge(base, {"a": {"c": 2}})
    assert base == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("turn_detection", "start", "end"),
    [
        ({"type": "server_vad", "threshold": 0.2}, "START_SENSITIVITY_HIGH", None),
        ({"type": "server_vad", "threshold": 0.8}, "START_SENSITIVITY_LOW", None),
        ({"type": "server_vad", "threshold": 0.5}, None, None),
        ({"type": "semantic_vad", "eagerness": "high"}, "START_SENSITIVITY_HIGH", "END_SENSITIVITY_HIGH"),
        ({"type": "semantic_vad", "eagerness": "low"}, "START_SENSITIVITY_LOW", "END_SENSITIVITY_LOW"),
        ({"type": "semantic_vad", "eagerness": "auto"}, None, None),
    ],
)
def test_turn_detection_maps_to_activity_detection_sensitivities(
    turn_detection: dict[str, Any], start: str | None, end: str | None
) -> None:
    aad = wire.vad_config({**turn_detection, "silence_duration_ms": 900, "prefix_padding_ms": 120})
    assert aad.get("startOfSpeechSensitivity") == start
    assert aad.get("endOfSpeechSensitivity") == end
    assert aad["silenceDurationMs"] == 900 and aad["prefixPaddingMs"] == 120
    assert aad["disabled"] is False
    validate_client_message({"setup": {"model": "models/m", "realtimeInputConfig": {"automaticActivityDetection": aad}}})


def test_no_turn_detection_keeps_automatic_detection_on_with_service_defaults() -> None:
    assert wire.vad_config(None) == {"disabled": False}


def test_gemini_3_models_get_history_config_only_when_history_follows() -> None:
    setup = make_setup(model="gemini-3.1-flash-live-preview")
    assert "historyConfig" not in wire.build_setup(setup)["setup"]
    message = wire.build_setup(setup, history_follows=True)
    assert message["setup"]["historyConfig"] == {"initialHistoryInClientContent": True}
    validate_client_message(message)
    assert "historyConfig" not in wire.build_setup(make_setup(), history_follows=True)["setup"]


def test_model_path_prefixes_plain_ids_only() -> None:
    assert wire.model_path("gemini-x") == "models/gemini-x"
    assert wire.model_path("models/gemini-x") == "models/gemini-x"
    vertex = "projects/p/locations/us-central1/publishers/google/models/m"
    assert wire.model_path(vertex) == vertex


def test_audio_frame_is_the_realtime_input_audio_message() -> None:
    pcm = bytes(range(256)) * 4
    text = wire.audio_frame(pcm)
    message = json.loads(text)
    assert message == {
        "realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(pcm).decode()}}
    }
    parsed = validate_client_message(message)
    assert parsed.realtime_input is not None and parsed.realtime_input.audio is not None
    assert parsed.realtime_input.audio.data == pcm


def test_text_turns_history_and_realtime_text_validate() -> None:
    turn = wire.user_turn("hello", turn_complete=False)
    assert turn["clientContent"] == {
        "turns": [{"role": "user", "parts": [{"text": "hello"}]}], "turnComplete": False
    }
    validate_client_message(turn)
    validate_client_message(wire.realtime_text("hi"))
    history = wire.history_turns(
        [HistoryItem("user", "hi"), HistoryItem("assistant", "hello!"), HistoryItem("user", "")]
    )
    assert history is not None
    assert [t["role"] for t in history["clientContent"]["turns"]] == ["user", "model"]
    assert history["clientContent"]["turnComplete"] is False
    validate_client_message(history)
    assert wire.history_turns([]) is None


@pytest.mark.parametrize(
    ("output", "response"),
    [
        ('{"status": "shipped"}', {"output": {"status": "shipped"}}),
        ('{"error": "not found"}', {"error": "not found"}),
        ('{"output": "done"}', {"output": "done"}),
        ("plain words", {"output": "plain words"}),
        ("[1, 2]", {"output": [1, 2]}),
    ],
)
def test_tool_response_wraps_anything_that_is_not_an_output_object(
    output: str, response: dict[str, Any]
) -> None:
    message = wire.tool_response("call-1", "order_status", output)
    assert message["toolResponse"]["functionResponses"] == [
        {"id": "call-1", "name": "order_status", "response": response}
    ]
    validate_client_message(message)


def test_parse_message_skips_frames_that_are_not_json_objects() -> None:
    assert wire.parse_message("not json") is None
    assert wire.parse_message("[1, 2]") is None
    assert wire.parse_message(b'{"setupComplete": {}}') == {"setupComplete": {}}


def test_audio_chunks_decode_pcm_and_skip_other_parts() -> None:
    pcm = b"\x01\x02" * 10
    model_turn = {
        "parts": [
            {"text": "thinking"},
            {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(pcm).decode()}},
            "garbage",
        ]
    }
    assert wire.audio_chunks(model_turn) == [pcm]


def test_function_calls_give_id_name_and_json_arguments() -> None:
    calls = wire.function_calls(
        {"functionCalls": [{"id": "a", "name": "f", "args": {"x": 1}}, {"id": "b"}, {"name": "g"}]}
    )
    assert calls == [("a", "f", '{"x": 1}'), ("", "g", "{}")]


def test_usage_is_split_by_modality_with_cached_tokens() -> None:
    usage = wire.parse_usage({
        "promptTokenCount": 130, "responseTokenCount": 60, "cachedContentTokenCount": 40,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100}, {"modality": "AUDIO", "tokenCount": 30}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 55}, {"modality": "TEXT", "tokenCount": 5}],
    })
    assert usage == Usage(input_text=100, input_audio=30, input_cached=40, output_text=5, output_audio=55)


def test_usage_without_details_and_vertex_names() -> None:
    assert wire.parse_usage({"promptTokenCount": 10, "responseTokenCount": 7}) == Usage(
        input_text=10, output_audio=7
    )
    vertex = wire.parse_usage({
        "promptTokenCount": 3, "candidatesTokenCount": 9,
        "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 9}],
    })
    assert vertex.output_audio == 9 and vertex.input_text == 3


@pytest.mark.parametrize(("value", "seconds"), [("1s", 1.0), ("0.5s", 0.5), ("12", 12.0), (None, 10.0), ("x", 10.0)])
def test_parse_duration_reads_protobuf_durations(value: Any, seconds: float) -> None:
    assert wire.parse_duration(value) == seconds
