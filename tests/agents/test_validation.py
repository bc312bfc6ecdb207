from __future__ import annotations

import json
from typing import Any

import pytest

from agentplatform.agents.issues import Issue
from agentplatform.agents.validation import check_text
from agentplatform.catalog import Catalog
from agentplatform.config import Settings

FILE = "agents/front-desk.yaml"
BASE: dict[str, Any] = {
    "name": "front-desk",
    "model": "openai/gpt-realtime",
    "voice": "marin",
    "prompt": "Help callers book appointments.",
    "phone_numbers": ["+15555550100"],
}


def _check(catalog: Catalog, settings: Settings, environ: dict[str, str] | None = None,
           text: str | None = None, **changes: Any) -> list[Issue]:
    if text is None:
        text = json.dumps({**BASE, **changes})  # JSON is YAML
    _, issues = check_text(text, file=FILE, catalog=catalog, settings=settings,
                           environ=environ or {})
    assert all(i.file == FILE for i in issues), issues
    return issues


def _one(issues: list[Issue], field: str, severity: str = "error") -> Issue:
    found = [i for i in issues if i.field == field and i.severity == severity]
    assert len(found) == 1, f"expected one {severity} at {field}, got {issues}"
    return found[0]


@pytest.fixture
def check(catalog: Catalog, keyed_settings: Settings):
    """Checks against settings with every key set, so only the rule under test speaks."""
    def run(**changes: Any) -> list[Issue]:
        return _check(catalog, keyed_settings, **changes)
    return run


def test_base_agent_has_no_issues(check) -> None:
    assert check() == []


# --- model, voice, tokens, modality ---------------------------------------------------


def test_unknown_model_names_what_the_catalog_offers(check) -> None:
    issue = _one(check(model="openai/gpt-5-voice"), "model")
    assert "'openai/gpt-5-voice'" in issue.message
    assert "openai/gpt-realtime" in issue.message and "amazon/nova-sonic" in issue.message


def test_unknown_fallback_model_is_named_by_index(check) -> None:
    issues = check(fallback_models=["openai/gpt-realtime-mini", "nope/model"])
    assert "'nope/model'" in _one(issues, "fallback_models[1]").message
    assert not [i for i in issues if i.field == "fallback_models[0]"]


def test_model_alias_is_accepted(check) -> None:
    assert check(model="xai/grok-voice-latest", voice="ara") == []


def test_voice_not_offered_lists_the_offered_voices(check) -> None:
    issue = _one(check(voice="nova"), "voice")
    assert "'nova'" in issue.message and "openai/gpt-realtime" in issue.message
    assert "marin" in issue.message and "cedar" in issue.message


def test_voice_of_the_provider_but_not_of_the_model_is_an_error(check) -> None:
    issue = _one(check(model="openai/gpt-4o-realtime", voice="marin"), "voice")
    assert "openai/gpt-4o-realtime" in issue.message and "alloy" in issue.message


def test_voice_in_the_wrong_case_suggests_the_right_one(check) -> None:
    issue = _one(check(model="google/gemini-3.1-flash-live", voice="puck"), "voice")
    assert "did you mean 'Puck'" in issue.message


def test_fallback_without_the_voice_is_a_warning(check) -> None:
    issues = check(fallback_models=["xai/grok-voice"])
    issue = _one(issues, "fallback_models[0]", "warning")
    assert "'marin'" in issue.message and "'ara'" in issue.message


@pytest.mark.parametrize("tokens", [0, -5])
def test_max_output_tokens_below_one_is_an_error(check, tokens: int) -> None:
    assert "at least 1" in _one(check(max_output_tokens=tokens), "max_output_tokens").message


def test_max_output_tokens_above_the_model_cap_is_an_error(check, catalog: Catalog) -> None:
    cap = catalog.model("openai/gpt-realtime").max_output_tokens
    issue = _one(check(max_output_tokens=cap + 1), "max_output_tokens")
    assert str(cap) in issue.message
    assert check(max_output_tokens=cap) == []


def test_small_max_output_tokens_is_a_warning(check) -> None:
    issues = check(max_output_tokens=300)
    assert "cut off" in _one(issues, "max_output_tokens", "warning").message
    assert not [i for i in issues if i.is_error]


@pytest.mark.parametrize(("model", "voice"), [("google/gemini-2.5-flash-native-audio", "Puck"),
                                              ("amazon/nova-sonic", "matthew")])
def test_voice_streaming_off_needs_a_text_model(check, model: str, voice: str) -> None:
    issue = _one(check(model=model, voice=voice, voice_streaming=False), "voice_streaming")
    assert "voice_streaming" in issue.message and model in issue.message


def test_voice_streaming_off_on_openai_runs_the_cascade_with_no_issues(check) -> None:
    assert check(voice_streaming=False) == []


def test_cascade_agent_names_an_unknown_stt_service(check) -> None:
    issue = _one(check(voice_streaming=False, cascade={"stt": {"service": "deepgram"}}),
                 "cascade.stt.service")
    assert "'deepgram'" in issue.message and "local" in issue.message and "openai" in issue.message


def test_cascade_agent_names_an_unknown_tts_voice(check) -> None:
    issue = _one(check(voice_streaming=False, cascade={"tts": {"service": "openai",
                                                                "voice": "marin"}}),
                 "cascade.tts.voice")
    assert "'marin'" in issue.message and "alloy" in issue.message


def test_cascade_agent_names_an_unknown_stt_model(check) -> None:
    issue = _one(check(voice_streaming=False, cascade={"stt": {"service": "openai",
                                                                "model": "whisper-2"}}),
                 "cascade.stt.model")
    assert "gpt-4o-transcribe" in issue.message


def test_cloud_speech_services_without_a_key_are_warnings(catalog: Catalog,
                                                          settings: Settings) -> None:
    issues = _check(catalog, settings, voice_streaming=False,
                    cascade={"stt": {"service": "openai"}, "tts": {"service": "openai"}})
    assert _one(issues, "cascade.stt.service", "warning")
    assert _one(issues, "cascade.tts.service", "warning")
    assert not [i for i in issues if i.is_error]


def test_local_model_must_turn_voice_streaming_off(check) -> None:
    issue = _one(check(model="local/offline", voice="joe"), "voice_streaming")
    assert "voice_streaming: false" in issue.message


def test_local_model_with_no_rules_and_no_endpoint_warns(check) -> None:
    issues = check(model="local/offline", voice="joe", voice_streaming=False)
    assert "fallback_reply" in _one(issues, "rules", "warning").message


def test_a_rule_with_a_broken_pattern_is_named(check) -> None:
    issue = _one(check(model="local/offline", voice="joe", voice_streaming=False,
                       rules=[{"match": "(hours", "reply": "Nine to five."}]),
                 "rules[0].match")
    assert "regular expression" in issue.message


# --- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["15555550100", "+1555", "+0123456789", "+1 555 555 0100",
                                    "+1234567890123456", "+1555555010a"])
def test_phone_numbers_must_be_e164(check, number: str) -> None:
    issue = _one(check(phone_numbers=["+15555550199", number]), "phone_numbers[1]")
    assert repr(number) in issue.message and "E.164" in issue.message


@pytest.mark.parametrize("number", ["+4930123456", "+123456789012345", "+15555550100"])
def test_e164_numbers_are_accepted(check, number: str) -> None:
    assert check(phone_numbers=[number]) == []


def test_unquoted_number_in_yaml_gets_a_quoting_hint(catalog, keyed_settings) -> None:
    text = "name: front-desk\nphone_numbers:\n  - +15555550100\n"
    issue = _one(_check(catalog, keyed_settings, text=text), "phone_numbers[0]")
    assert "quote" in issue.message
    assert issue.line == 3


# --- advanced ---------------------------------------------------------------------------


def test_advanced_must_be_a_mapping(check) -> None:
    assert "mapping" in _one(check(advanced="speed: fast"), "advanced").message


def test_unknown_advanced_key_lists_the_provider_keys(check) -> None:
    issue = _one(check(advanced={"openai": {}}), "advanced.openai")
    for key in ("openai_realtime", "xai_realtime", "gemini_audio", "nova_sonic"):
        assert key in issue.message


def test_advanced_key_for_another_provider_is_a_warning(check) -> None:
    issues = check(advanced={"gemini_audio": {"x": 1}})
    assert "openai_realtime" in _one(issues, "advanced.gemini_audio", "warning").message
    assert not [i for i in issues if i.is_error]


def test_advanced_json_string_is_accepted(check) -> None:
    assert check(advanced={"openai_realtime": '{"audio": {"output": {"speed": 1.2}}}'}) == []


def test_malformed_advanced_json_is_an_error(check) -> None:
    issue = _one(check(advanced={"openai_realtime": "{speed: 1.2"}), "advanced.openai_realtime")
    assert "not valid JSON" in issue.message


def test_advanced_json_string_that_is_not_an_object_is_an_error(check) -> None:
    issue = _one(check(advanced={"openai_realtime": "[1, 2]"}), "advanced.openai_realtime")
    assert "JSON object" in issue.message


def test_advanced_values_must_be_json_values(catalog, keyed_settings) -> None:
    text = "name: front-desk\nadvanced:\n  openai_realtime:\n    starts: 2025-01-01\n"
    issue = _one(_check(catalog, keyed_settings, text=text), "advanced.openai_realtime")
    assert "JSON" in issue.message


# --- tools ------------------------------------------------------------------------------


WEBHOOK = {"type": "webhook", "name": "lookup", "url": "https://example.com/lookup"}


def test_tool_names_must_be_unique(check) -> None:
    issues = check(tools=[WEBHOOK, {"type": "end_call"}, {**WEBHOOK, "url": "https://x.test"}])
    issue = _one(issues, "tools[2].name")
    assert "'lookup'" in issue.message and "tools[0]" in issue.message


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/lookup", "https://",
                                 "file:///etc/passwd"])
def test_webhook_url_must_be_http_or_https(check, url: str) -> None:
    issue = _one(check(tools=[{**WEBHOOK, "url": url}]), "tools[0].url")
    assert "http" in issue.message and repr(url) in issue.message


def test_webhook_without_url_names_the_missing_field(check) -> None:
    issues = check(tools=[{"type": "webhook", "name": "lookup"}])
    assert "missing" in _one(issues, "tools[0].url").message
    assert len(issues) == 1  # no noise from the other tool kinds


def test_unknown_tool_type_lists_the_known_types(check) -> None:
    issue = _one(check(tools=[{"type": "sms", "name": "text_me"}]), "tools[0].type")
    assert "'sms'" in issue.message and "transfer_call" in issue.message


def test_unknown_field_in_a_tool_lists_what_is_allowed(check) -> None:
    issue = _one(check(tools=[{**WEBHOOK, "retries": 3}]), "tools[0].retries")
    assert "allowed here" in issue.message and "timeout_seconds" in issue.message


def test_transfer_destinations_must_be_e164(check) -> None:
    tool = {"type": "transfer_call",
            "destinations": {"billing": "+15555550111", "desk": "555-0100"}}
    issues = check(tools=[tool])
    assert "E.164" in _one(issues, "tools[0].destinations.desk").message
    assert len(issues) == 1


def test_unset_header_variable_is_a_warning(check) -> None:
    tool = {**WEBHOOK, "headers_from_env": {"Authorization": "TOOL_SECRET_BOOKING_TOKEN"}}
    issue = _one(check(tools=[tool]), "tools[0].headers_from_env.Authorization", "warning")
    assert "TOOL_SECRET_BOOKING_TOKEN" in issue.message


# --- keys -------------------------------------------------------------------------------


def test_missing_platform_key_is_only_a_warning(catalog, settings) -> None:
    issues = _check(catalog, settings)
    assert "OPENAI_API_KEY" in _one(issues, "model", "warning").message
    assert not [i for i in issues if i.is_error]


def test_agent_key_variable_not_set_is_a_warning(catalog, settings) -> None:
    issues = _check(catalog, settings, credentials={"api_key_env": "TOOL_SECRET_CLINIC_OPENAI_KEY"})
    issue = _one(issues, "credentials.api_key_env", "warning")
    assert "TOOL_SECRET_CLINIC_OPENAI_KEY" in issue.message
    assert not [i for i in issues if i.field == "model"]  # the agent's own key replaces it


def test_agent_key_variable_set_silences_the_warning(catalog, settings) -> None:
    issues = _check(catalog, settings, environ={"TOOL_SECRET_CLINIC_OPENAI_KEY": "sk-test"},
                    credentials={"api_key_env": "TOOL_SECRET_CLINIC_OPENAI_KEY"})
    assert issues == []


def test_missing_key_for_a_fallback_provider_is_a_warning(catalog, settings) -> None:
    issues = _check(catalog, settings, environ={"TOOL_SECRET_K": "sk"},
                    credentials={"api_key_env": "TOOL_SECRET_K"},
                    fallback_models=["openai/gpt-realtime-mini", "xai/grok-voice"])
    key_warnings = [i for i in issues if i.field == "fallback_models[1]" and "key" in i.message]
    assert len(key_warnings) == 1 and "XAI_API_KEY" in key_warnings[0].message
    assert key_warnings[0].severity == "warning"
    assert not [i for i in issues if i.field == "fallback_models[0]"]


def test_azure_without_an_endpoint_is_a_warning(catalog, settings) -> None:
    issues = _check(catalog, settings, model="azure/gpt-realtime")
    messages = " ".join(i.message for i in issues if i.field == "model")
    assert "AZURE_OPENAI_ENDPOINT" in messages and "AZURE_OPENAI_API_KEY" in messages
    assert not [i for i in issues if i.is_error]


# --- placeholders -----------------------------------------------------------------------


def test_unknown_prompt_placeholder_is_named(check) -> None:
    issue = _one(check(prompt="Caller: {{caller_number}}, plan: {{ plan }}"), "prompt")
    assert "{{plan}}" in issue.message and "params.<name>" in issue.message


def test_unknown_greeting_placeholder_is_named(check) -> None:
    assert "{{firstname}}" in _one(check(greeting="Hi {{firstname}}"), "greeting").message


def test_known_placeholders_and_params_pass(check) -> None:
    assert check(prompt="{{caller_number}} {{params.plan}} {{local_datetime}}",
                 greeting="Happy {{weekday}}!") == []


# --- shape (pydantic) -------------------------------------------------------------------


def test_unknown_top_level_field_is_named_with_the_allowed_ones(check) -> None:
    issue = _one(check(voise="marin"), "voise")
    assert "allowed here" in issue.message and "voice" in issue.message


def test_unknown_nested_field_has_a_dotted_path(check) -> None:
    issue = _one(check(turn_detection={"silence_ms": 200}), "turn_detection.silence_ms")
    assert "silence_duration_ms" in issue.message


def test_wrong_type_names_the_field(check) -> None:
    issue = _one(check(temperature="warm"), "temperature")
    assert "'warm'" in issue.message


def test_missing_name_is_reported(catalog, keyed_settings) -> None:
    assert "missing" in _one(_check(catalog, keyed_settings, text="voice: marin\n"), "name").message


def test_invalid_timezone_is_reported(check) -> None:
    assert "Mars/Base" in _one(check(timezone="Mars/Base"), "timezone").message


@pytest.mark.parametrize(("text", "words"), [("", "empty"), ("- a\n- b\n", "mapping"),
                                             ("name: [a\n", "line 2")])
def test_whole_file_problems(catalog, keyed_settings, text: str, words: str) -> None:
    issue = _one(_check(catalog, keyed_settings, text=text), "(file)")
    assert words in issue.message


def test_issues_carry_the_line_of_their_field(catalog, keyed_settings) -> None:
    text = ("name: front-desk\n"
            "voice: nova\n"
            "tools:\n"
            "  - type: webhook\n"
            "    name: lookup\n"
            "    url: ftp://example.com\n")
    issues = _check(catalog, keyed_settings, text=text)
    assert _one(issues, "voice").line == 2
    assert _one(issues, "tools[0].url").line == 6
    assert str(_one(issues, "tools[0].url")).startswith(f"{FILE}:6: error: tools[0].url: ")


# --- environment variables an agent file may name -----------------------------------------


@pytest.mark.parametrize("variable", [
    "TWILIO_AUTH_TOKEN", "SESSION_SECRET", "STREAM_TOKEN_SECRET", "OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE", "ADMIN_PASSWORD_HASH", "API_KEY",
    "DATABASE_URL", "REDIS_URL", "GEMINI_API_KEY", "session_secret", "TWILIO_API_SECRET",
])
def test_a_webhook_header_may_never_read_a_platform_setting(catalog, variable) -> None:
    allowing_it = Settings(_env_file=None, tool_env_allowlist=f"{variable},OTHER")
    tool = {**WEBHOOK, "headers_from_env": {"X-Leak": variable}}
    issues = _check(catalog, allowing_it, environ={variable: "secret"}, tools=[tool])
    issue = _one(issues, "tools[0].headers_from_env.X-Leak")
    assert issue.file == FILE and variable in issue.message and "never" in issue.message


def test_a_webhook_header_must_name_an_allowed_variable(catalog, keyed_settings) -> None:
    tool = {**WEBHOOK, "headers_from_env": {"Authorization": "HOME"}}
    issue = _one(_check(catalog, keyed_settings, environ={"HOME": "/root"}, tools=[tool]),
                 "tools[0].headers_from_env.Authorization")
    assert "TOOL_SECRET_" in issue.message and "TOOL_ENV_ALLOWLIST" in issue.message


def test_tool_secret_variables_and_allow_listed_ones_may_be_named(catalog) -> None:
    settings = Settings(_env_file=None, tool_env_allowlist=" BOOKING_KEY , CRM_TOKEN",
                        openai_api_key="k")
    tool = {**WEBHOOK, "headers_from_env": {"A": "TOOL_SECRET_BOOKING", "B": "BOOKING_KEY",
                                             "C": "CRM_TOKEN"}}
    env = {"TOOL_SECRET_BOOKING": "1", "BOOKING_KEY": "2", "CRM_TOKEN": "3"}
    assert _check(catalog, settings, environ=env, tools=[tool]) == []


@pytest.mark.parametrize("field,changes", [
    ("credentials.api_key_env", {"credentials": {"api_key_env": "TWILIO_AUTH_TOKEN"}}),
    ("credentials.endpoint_env", {"credentials": {"endpoint_env": "SESSION_SECRET"}}),
    ("credentials.api_key_env", {"credentials": {"api_key_env": "GITHUB_TOKEN"}}),
    ("cascade.llm.api_key_env", {"voice_streaming": False, "cascade": {"llm": {
        "url": "https://llm.example/v1", "model": "m", "api_key_env": "OPENAI_API_KEY"}}}),
])
def test_key_and_endpoint_variables_follow_the_same_rule(
        catalog, keyed_settings, field, changes) -> None:
    issues = _check(catalog, keyed_settings, environ={"GITHUB_TOKEN": "ghp"}, **changes)
    assert _one(issues, field).is_error
