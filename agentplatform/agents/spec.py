"""The agent, as its YAML file says it: one pydantic model per section.

Shape only; cross-field checks that need the catalog or other agents live in
``agentplatform.agents.validation``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TurnDetection(_Section):
    """Server-side turn detection. ``server_vad`` uses threshold/padding/silence;
    ``semantic_vad`` uses eagerness. Providers map what they can."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=5000)
    silence_duration_ms: int = Field(default=500, ge=0, le=10000)
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"


class WebhookTool(_Section):
    """An HTTP tool: the model's arguments go to ``url`` as JSON, the reply goes back."""

    type: Literal["webhook"] = "webhook"
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    # Header name -> environment variable holding its value (secrets stay out of YAML).
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # HTTP tools refuse private and loopback addresses unless this is set.
    allow_private_network: bool = False


class EndCallTool(_Section):
    """Built-in: let the goodbye finish playing, then hang up."""

    type: Literal["end_call"] = "end_call"
    name: str = "end_call"
    description: str = "End the phone call after saying goodbye."


class TransferCallTool(_Section):
    """Built-in: transfer the caller to one of the numbers named here."""

    type: Literal["transfer_call"] = "transfer_call"
    name: str = "transfer_call"
    description: str = "Transfer the caller to a person or department."
    # Destination name -> E.164 number. The model picks a destination by name.
    destinations: dict[str, str] = Field(min_length=1)


class SendDtmfTool(_Section):
    """Built-in: press keys on the phone keypad (RFC 4733 on SIP), e.g. to get
    through a phone menu on a call the agent placed."""

    type: Literal["send_dtmf"] = "send_dtmf"
    name: str = "send_dtmf"
    description: str = ("Press keys on the phone keypad, e.g. to choose an option in a phone "
                        "menu: digits 0-9, * and #; w waits half a second.")


Tool = WebhookTool | EndCallTool | TransferCallTool | SendDtmfTool


def _json_object(value: Any) -> Any:
    """Accept an advanced block written as a JSON string as well as a YAML mapping.

    Admins often paste a provider's JSON example verbatim; decoding it here means
    every reader of the spec sees a dict, and bad JSON fails with its position.
    """
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(decoded, dict):
        raise ValueError(f"must be a JSON object, got JSON {type(decoded).__name__}")
    return decoded


# A provider's advanced block: a mapping, or a JSON object given as a string.
AdvancedBlock = Annotated[dict[str, Any], BeforeValidator(_json_object)]


class SttConfig(_Section):
    """Speech-to-text for the cascade: a service from the catalog's ``stt_services``."""

    service: str = "local"
    model: str | None = None  # None: the service's default model
    language: str | None = "en"


class TtsConfig(_Section):
    """Text-to-speech for the cascade: a service from the catalog's ``tts_services``."""

    service: str = "local"
    voice: str | None = None  # None: the service's default voice
    model: str | None = None
    # Speaking-style instructions, for services that take them (gpt-4o-mini-tts).
    instructions: str | None = None


class ChatEndpoint(_Section):
    """An OpenAI-compatible chat-completions endpoint (a local Ollama or llama.cpp server,
    or a hosted one) used as the cascade's text step instead of the agent's model."""

    url: str = Field(pattern=r"^https?://")  # base URL, e.g. http://127.0.0.1:11434/v1
    model: str = Field(min_length=1)
    api_key_env: str | None = None


class Cascade(_Section):
    """How a ``voice_streaming: false`` agent hears and speaks."""

    stt: SttConfig = Field(default_factory=SttConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    llm: ChatEndpoint | None = None


class RuleTool(_Section):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    arguments: dict[str, Any] = Field(default_factory=dict)


class Rule(_Section):
    """One line of the offline rules responder (not a language model): when ``match``
    (a case-insensitive regular expression) is found in what the caller said, say
    ``reply`` and/or call ``tool``; ``after_tool`` is said once the tool answers, with
    ``{output}`` replaced by its result."""

    match: str = Field(min_length=1)
    reply: str | None = None
    tool: RuleTool | None = None
    after_tool: str | None = None

    @field_validator("match")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class Limits(_Section):
    """Spend controls. They hold across server processes: counters live in the database
    (or Redis), not in one process. ``None`` means no limit."""

    max_call_seconds: int = Field(default=1800, ge=10, le=4 * 3600)
    # Calls live at once for this agent; callers over it hear a busy message.
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=100_000)
    # Once today's (UTC) cost for this agent reaches this, new calls are refused.
    daily_budget_usd: float | None = Field(default=None, gt=0)
    # Calls one caller number may place to this agent per UTC day (abuse stop).
    max_calls_per_caller_per_day: int | None = Field(default=None, ge=1, le=100_000)
    # No input: this long after the agent finished speaking with the caller silent, the
    # agent asks whether they are still there; after ``idle_prompts_max`` such prompts it
    # says goodbye and hangs up (``idle_timeout``). ``None`` (the default) turns it off,
    # so an agent never speaks up unasked unless its file says so; 8 suits most lines.
    idle_prompt_seconds: float | None = Field(default=None, ge=2, le=600)
    idle_prompts_max: int = Field(default=2, ge=0, le=10)


class Recording(_Section):
    """Record the call as a stereo WAV (left: the caller, right: the agent as the caller
    heard it). ``announce`` is spoken to the caller before anything else, and recorded."""

    enabled: bool = False
    announce: str = Field(default="", max_length=1000)

    @field_validator("announce")
    @classmethod
    def _spoken_text(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _announce_needs_recording(self) -> Recording:
        if self.announce and not self.enabled:
            raise ValueError("recording.announce is set but recording.enabled is false: "
                             "set enabled: true, or remove the announcement")
        return self


class Credentials(_Section):
    """Bring your own key: the name of the environment variable holding it."""

    api_key_env: str | None = None
    # Provider-specific extras read from the environment (endpoint, region, ...).
    endpoint_env: str | None = None


class AgentSpec(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    model: str = "openai/gpt-realtime"
    fallback_models: list[str] = Field(default_factory=list)
    prompt: str = ""
    voice: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    greeting: str | None = None
    voice_streaming: bool = True
    # With voice_streaming off: STT → the model in text modality → TTS.
    cascade: Cascade = Field(default_factory=Cascade)
    # The offline rules responder (model local/offline with no LOCAL_LLM_URL).
    rules: list[Rule] = Field(default_factory=list)
    fallback_reply: str = "Sorry, I didn't catch that. Could you say it another way?"
    # Send the carrier's μ-law straight to models that accept it (no transcode).
    g711_passthrough: bool = False
    turn_detection: TurnDetection = Field(default_factory=TurnDetection)
    phone_numbers: list[str] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    recording: Recording = Field(default_factory=Recording)
    credentials: Credentials = Field(default_factory=Credentials)
    # Provider-keyed JSON merged last into that provider's session config.
    advanced: dict[str, AdvancedBlock] = Field(default_factory=dict)
    # IANA zone for the {{local_date}}/{{local_time}} placeholders; None means UTC.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'America/New_York'"
            ) from None
        return value
