import base64
import json

from agentplatform.realtime import nova_events as ev
from agentplatform.realtime.aws_eventstream import decode_message
from agentplatform.realtime.base import ToolSpec


def test_nova_2_session_start_nests_endpointing_sensitivity():
    event = ev.session_start(max_tokens=900, sensitivity="HIGH",
                             profile=ev.profile_for("amazon.nova-2-sonic-v1:0"))
    body = event["event"]["sessionStart"]
    assert body["turnDetectionConfiguration"] == {"endpointingSensitivity": "HIGH"}
    assert "endpointingSensitivity" not in body
    assert body["inferenceConfiguration"]["maxTokens"] == 900


def test_nova_v1_session_start_uses_the_flat_form():
    event = ev.session_start(sensitivity="LOW", profile=ev.profile_for("amazon.nova-sonic-v1:0"))
    body = event["event"]["sessionStart"]
    assert body["endpointingSensitivity"] == "LOW"
    assert "turnDetectionConfiguration" not in body


def test_unknown_model_ids_get_the_nova_2_profile():
    assert ev.profile_for("amazon.nova-3-sonic-v1:0").nested_turn_detection
    assert not ev.profile_for("amazon.nova-sonic-v1:0").interactive_text


def test_turn_detection_maps_to_endpointing_sensitivity():
    assert ev.endpointing_sensitivity(None) is None
    assert ev.endpointing_sensitivity({"type": "semantic_vad", "eagerness": "high"}) == "HIGH"
    assert ev.endpointing_sensitivity({"type": "semantic_vad", "eagerness": "auto"}) is None
    assert ev.endpointing_sensitivity({"type": "server_vad", "silence_duration_ms": 200}) == "HIGH"
    medium = {"type": "server_vad", "silence_duration_ms": 500}
    assert ev.endpointing_sensitivity(medium) == "MEDIUM"
    assert ev.endpointing_sensitivity({"type": "server_vad", "silence_duration_ms": 1200}) == "LOW"


def test_prompt_start_carries_voice_and_tool_schema_as_a_string():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    event = ev.prompt_start("p1", voice="tiffany",
                            tools=[ToolSpec("weather", "Get weather", schema)])
    body = event["event"]["promptStart"]
    assert body["audioOutputConfiguration"]["voiceId"] == "tiffany"
    assert body["audioOutputConfiguration"]["sampleRateHertz"] == 24000
    spec = body["toolConfiguration"]["tools"][0]["toolSpec"]
    assert isinstance(spec["inputSchema"]["json"], str)
    assert json.loads(spec["inputSchema"]["json"]) == schema


def test_prompt_start_without_tools_leaves_tool_configuration_out():
    body = ev.prompt_start("p", voice="matthew", tools=[])["event"]["promptStart"]
    assert "toolConfiguration" not in body


def test_tool_result_block_names_the_tool_use_and_keeps_output_text():
    start, result, end = ev.tool_result_block("p", "c", "tool-1", '{"temp": 21}')
    config = start["event"]["contentStart"]["toolResultInputConfiguration"]
    assert config["toolUseId"] == "tool-1"
    assert start["event"]["contentStart"]["role"] == "TOOL"
    assert result["event"]["toolResult"]["content"] == '{"temp": 21}'
    assert end["event"]["contentEnd"] == {"promptName": "p", "contentName": "c"}


def test_audio_input_base64_encodes_pcm():
    body = ev.audio_input("p", "a", b"\x01\x02\x03\x04")["event"]["audioInput"]
    assert base64.b64decode(body["content"]) == b"\x01\x02\x03\x04"


def test_deep_merge_merges_nested_dicts_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": 2}, "b": [1], "c": 3}
    merged = ev.deep_merge(base, {"a": {"y": 20, "z": 30}, "b": [2]})
    assert merged == {"a": {"x": 1, "y": 20, "z": 30}, "b": [2], "c": 3}
    assert base["a"] == {"x": 1, "y": 2}


def test_chunk_message_round_trips_through_read_message():
    event = ev.text_input("p", "c", "héllo")
    message = decode_message(ev.chunk_message(event))
    assert message.headers == {":message-type": "event", ":event-type": "chunk",
                               ":content-type": "application/json"}
    assert set(json.loads(message.payload)) == {"bytes"}
    assert ev.read_message(message) == event


def test_exception_message_reads_as_service_exception():
    message = decode_message(ev.exception_message(ev.VALIDATION, "bad order"))
    assert ev.read_message(message) == ev.ServiceException("validationException", "bad order")


def test_unreadable_chunk_is_skipped():
    from agentplatform.realtime.aws_eventstream import encode_message

    message = decode_message(encode_message(
        {":message-type": "event", ":event-type": "chunk"}, b'{"bytes": "not base64 json!"}'))
    assert ev.read_message(message) is None


def test_parse_content_start_reads_the_generation_stage_from_its_json_string():
    event = ev.output_content_start("p", "cmp", "c1", "TEXT", "ASSISTANT", "SPECULATIVE")
    assert ev.parse_output(event) == ev.ContentStart("c1", "TEXT", "ASSISTANT", "SPECULATIVE")


def test_parse_audio_output_decodes_pcm():
    assert ev.parse_output(ev.audio_output("c", b"\x00\x01")) == ev.AudioOutput("c", b"\x00\x01")


def test_interrupted_marker_is_recognized_in_text_output():
    parsed = ev.parse_output(ev.text_output("c", "ASSISTANT", '{ "interrupted" : true }'))
    assert parsed.interrupted
    assert not ev.parse_output(ev.text_output("c", "ASSISTANT", "{not json")).interrupted
    assert not ev.parse_output(ev.text_output("c", "ASSISTANT", "Hello")).interrupted


def test_tool_use_arguments_double_encoded_are_unwrapped():
    args = json.dumps({"city": "Oslo"})
    once = ev.parse_output(ev.tool_use("c", "t1", "weather", args))
    twice = ev.parse_output(ev.tool_use("c", "t1", "weather", json.dumps(args)))
    assert once.arguments == args
    assert twice.arguments == args
    assert twice.tool_use_id == "t1" and twice.name == "weather"


def test_usage_event_reads_the_delta_counts():
    event = ev.usage_event("cmp", input_speech=3, input_text=4, output_speech=5, output_text=6,
                           totals=(7, 11))
    assert ev.parse_output(event) == ev.UsageDelta(3, 4, 5, 6)


def test_unknown_and_malformed_events_parse_to_none():
    assert ev.parse_output({"event": {"somethingNew": {}}}) is None
    assert ev.parse_output({"event": {}}) is None
    assert ev.parse_output({"nope": 1}) is None
    assert ev.parse_output({"event": {"toolUse": {"content": "{}"}}}) is None  # no ids
