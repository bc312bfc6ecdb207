"""Nova Sonic events: pure builders and parsers, no I/O.

Every Nova event is a JSON object ``{"event": {"<name>": {...}}}``. On the wire each
one travels as an event-stream ``chunk`` message whose payload is
``{"bytes": "<base64 of the event JSON>"}``; the service answers the same way, or
with an exception message. The adapter (``nova_sonic``) builds on this module; the
simulator deliberately does not (``agentplatform.testing.nova_sonic_wire`` is its own
reading of AWS's format), and AWS's SDK referees both in the tests, so a misreading
shared by the two sides cannot pass unnoticed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from agentplatform.realtime.aws_eventstream import Message, encode_message
from agentplatform.realtime.base import ToolSpec

log = logging.getLogger(__name__)

INPUT_RATE = 16000
OUTPUT_RATE = 24000
INTERRUPTED_TEXT = '{ "interrupted" : true }'


# ---------------------------------------------------------------- model profiles


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What differs between Nova Sonic generations, as data."""

    # Nova 2 wants ``turnDetectionConfiguration: {endpointingSensitivity}``; v1 the flat key.
    nested_turn_detection: bool = True
    # Nova 2 takes a USER TEXT block with ``interactive: true`` while audio is open.
    interactive_text: bool = True


_PROFILES: dict[str, ModelProfile] = {
    "amazon.nova-sonic-v1:0": ModelProfile(nested_turn_detection=False, interactive_text=False),
}
_NOVA_2 = ModelProfile()


def profile_for(model_id: str) -> ModelProfile:
    """The profile of a wire model id; unknown ids are taken to be Nova 2 or later."""
    return _PROFILES.get(model_id, _NOVA_2)


def endpointing_sensitivity(turn_detection: dict[str, Any] | None) -> str | None:
    """Map the agent's turn detection onto Nova's HIGH|MEDIUM|LOW (HIGH ends turns soonest).

    ``semantic_vad`` maps its eagerness; ``server_vad`` maps its silence duration.
    ``None`` leaves the service default.
    """
    if not turn_detection:
        return None
    if turn_detection.get("type") == "semantic_vad":
        return {"high": "HIGH", "medium": "MEDIUM", "low": "LOW"}.get(
            str(turn_detection.get("eagerness", "auto"))
        )
    silence = int(turn_detection.get("silence_duration_ms", 500))
    if silence <= 300:
        return "HIGH"
    if silence <= 700:
        return "MEDIUM"
    return "LOW"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``; nested dicts merge, the rest replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------- input events (client → model)


def _event(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"event": {name: body}}


def session_start(
    *, max_tokens: int = 1024, top_p: float = 0.9, temperature: float = 0.7,
    sensitivity: str | None = None, profile: ModelProfile = _NOVA_2,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inferenceConfiguration": {"maxTokens": max_tokens, "topP": top_p,
                                   "temperature": temperature}
    }
    if sensitivity is not None:
        if profile.nested_turn_detection:
            body["turnDetectionConfiguration"] = {"endpointingSensitivity": sensitivity}
        else:
            body["endpointingSensitivity"] = sensitivity
    return _event("sessionStart", body)


def tool_configuration(tools: list[ToolSpec]) -> dict[str, Any]:
    """Nova wants each tool's JSON schema as a *string* under ``inputSchema.json``."""
    return {
        "tools": [
            {"toolSpec": {"name": t.name, "description": t.description,
                          "inputSchema": {"json": orjson.dumps(t.parameters).decode()}}}
            for t in tools
        ]
    }


def prompt_start(prompt_name: str, *, voice: str, tools: list[ToolSpec]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "promptName": prompt_name,
        "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm", "sampleRateHertz": OUTPUT_RATE, "sampleSizeBits": 16,
            "channelCount": 1, "voiceId": voice, "encoding": "base64", "audioType": "SPEECH",
        },
    }
    if tools:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        body["toolConfiguration"] = tool_configuration(tools)
    return _event("promptStart", body)


def text_content_start(
    prompt_name: str, content_name: str, role: str, *, interactive: bool = False
) -> dict[str, Any]:
    """The start of a TEXT block. ``interactive`` says whether the model should answer it.

    AWS's samples disagree on the SYSTEM block (the Nova 2 console sample sends ``true``
    from one template shared by every role, the "simple" sample beside it ``false``),
    and the service takes both. Nova 2's cross-modal guide gives the flag its meaning:
    ``true`` on USER text asks for an answer. The system prompt and replayed history
    ask for none, so they are ``false``; only a typed turn that wants a reply is ``true``.
    """
    return _event("contentStart", {
        "promptName": prompt_name, "contentName": content_name, "type": "TEXT",
        "interactive": interactive, "role": role,
        "textInputConfiguration": {"mediaType": "text/plain"},
    })


def text_input(prompt_name: str, content_name: str, text: str) -> dict[str, Any]:
    return _event("textInput", {"promptName": prompt_name, "contentName": content_name,
                                "content": text})


def content_end(prompt_name: str, content_name: str) -> dict[str, Any]:
    return _event("contentEnd", {"promptName": prompt_name, "contentName": content_name})


def text_block(
    prompt_name: str, content_name: str, role: str, text: str, *, interactive: bool = False
) -> list[dict[str, Any]]:
    """A whole TEXT content block: start, text, end."""
    return [
        text_content_start(prompt_name, content_name, role, interactive=interactive),
        text_input(prompt_name, content_name, text),
        content_end(prompt_name, content_name),
    ]


def audio_content_start(prompt_name: str, content_name: str) -> dict[str, Any]:
    return _event("contentStart", {
        "promptName": prompt_name, "contentName": content_name, "type": "AUDIO",
        "interactive": True, "role": "USER",
        "audioInputConfiguration": {
            "mediaType": "audio/lpcm", "sampleRateHertz": INPUT_RATE, "sampleSizeBits": 16,
            "channelCount": 1, "audioType": "SPEECH", "encoding": "base64",
        },
    })


def audio_input(prompt_name: str, content_name: str, pcm16: bytes) -> dict[str, Any]:
    return _event("audioInput", {"promptName": prompt_name, "contentName": content_name,
                                 "content": base64.b64encode(pcm16).decode("ascii")})


def tool_result_block(
    prompt_name: str, content_name: str, tool_use_id: str, output: str
) -> list[dict[str, Any]]:
    """A TOOL content block answering ``tool_use_id``; ``output`` is sent as given (JSON text)."""
    return [
        _event("contentStart", {
            "promptName": prompt_name, "contentName": content_name, "interactive": False,
            "type": "TOOL", "role": "TOOL",
            "toolResultInputConfiguration": {
                "toolUseId": tool_use_id, "type": "TEXT",
                "textInputConfiguration": {"mediaType": "text/plain"},
            },
        }),
        _event("toolResult", {"promptName": prompt_name, "contentName": content_name,
                              "content": output}),
        content_end(prompt_name, content_name),
    ]


def prompt_end(prompt_name: str) -> dict[str, Any]:
    return _event("promptEnd", {"promptName": prompt_name})


def session_end() -> dict[str, Any]:
    return _event("sessionEnd", {})


# ---------------------------------------------------------------- output events (model → client)


def completion_start(session_id: str, prompt_name: str, completion_id: str) -> dict[str, Any]:
    return _event("completionStart", {"sessionId": session_id, "promptName": prompt_name,
                                      "completionId": completion_id})


def output_content_start(
    prompt_name: str, completion_id: str, content_id: str, kind: str, role: str,
    stage: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"promptName": prompt_name, "completionId": completion_id,
                            "contentId": content_id, "type": kind, "role": role}
    if stage is not None:
        body["additionalModelFields"] = orjson.dumps({"generationStage": stage}).decode()
    return _event("contentStart", body)


def text_output(content_id: str, role: str, text: str) -> dict[str, Any]:
    return _event("textOutput", {"contentId": content_id, "role": role, "content": text})


def audio_output(content_id: str, pcm16: bytes) -> dict[str, Any]:
    return _event("audioOutput", {"contentId": content_id,
                                  "content": base64.b64encode(pcm16).decode("ascii")})


def tool_use(content_id: str, tool_use_id: str, name: str, arguments: str) -> dict[str, Any]:
    return _event("toolUse", {"contentId": content_id, "toolUseId": tool_use_id,
                              "toolName": name, "content": arguments})


def output_content_end(content_id: str, kind: str, stop_reason: str) -> dict[str, Any]:
    return _event("contentEnd", {"contentId": content_id, "type": kind,
                                 "stopReason": stop_reason})


def usage_event(
    completion_id: str, *, input_speech: int, input_text: int, output_speech: int,
    output_text: int, totals: tuple[int, int],
) -> dict[str, Any]:
    delta = {"input": {"speechTokens": input_speech, "textTokens": input_text},
             "output": {"speechTokens": output_speech, "textTokens": output_text}}
    total_in, total_out = totals
    return _event("usageEvent", {
        "completionId": completion_id, "totalInputTokens": total_in,
        "totalOutputTokens": total_out, "totalTokens": total_in + total_out,
        "details": {"delta": delta},
    })


def completion_end(completion_id: str, stop_reason: str = "END_TURN") -> dict[str, Any]:
    return _event("completionEnd", {"completionId": completion_id, "stopReason": stop_reason})


# ---------------------------------------------------------------- typed output events


@dataclass(slots=True)
class CompletionStart:
    completion_id: str


@dataclass(slots=True)
class ContentStart:
    content_id: str
    kind: str  # TEXT | AUDIO | TOOL
    role: str
    stage: str  # SPECULATIVE | FINAL | ""


@dataclass(slots=True)
class TextOutput:
    content_id: str
    role: str
    text: str

    @property
    def interrupted(self) -> bool:
        """The service's barge-in marker, sent as the text content itself."""
        return self.text.startswith("{") and _is_interrupted_marker(self.text)


@dataclass(slots=True)
class AudioOutput:
    content_id: str
    audio: bytes


@dataclass(slots=True)
class ToolUse:
    content_id: str
    tool_use_id: str
    name: str
    arguments: str  # JSON object text, unwrapped if the service double-encoded it


@dataclass(slots=True)
class ContentEnd:
    content_id: str
    kind: str
    stop_reason: str


@dataclass(slots=True)
class UsageDelta:
    input_speech: int
    input_text: int
    output_speech: int
    output_text: int


@dataclass(slots=True)
class CompletionEnd:
    stop_reason: str


OutputEvent = (
    CompletionStart | ContentStart | TextOutput | AudioOutput | ToolUse | ContentEnd
    | UsageDelta | CompletionEnd
)


def _is_interrupted_marker(text: str) -> bool:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and value.get("interrupted") is True


def _stage(fields: Any) -> str:
    if not isinstance(fields, str):
        return ""
    try:
        value = orjson.loads(fields)
    except orjson.JSONDecodeError:
        return ""
    return str(value.get("generationStage", "")) if isinstance(value, dict) else ""


def unwrap_arguments(content: str) -> str:
    """Tool arguments sometimes arrive JSON-encoded twice (a JSON string holding JSON)."""
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content
    return value if isinstance(value, str) else content


def _usage(body: dict[str, Any]) -> UsageDelta:
    delta = (body.get("details") or {}).get("delta") or {}
    inp, out = delta.get("input") or {}, delta.get("output") or {}
    return UsageDelta(int(inp.get("speechTokens", 0)), int(inp.get("textTokens", 0)),
                      int(out.get("speechTokens", 0)), int(out.get("textTokens", 0)))


_PARSERS: dict[str, Callable[[dict[str, Any]], OutputEvent]] = {
    "completionStart": lambda b: CompletionStart(str(b.get("completionId", ""))),
    "contentStart": lambda b: ContentStart(str(b.get("contentId", "")), str(b.get("type", "")),
                                           str(b.get("role", "")),
                                           _stage(b.get("additionalModelFields"))),
    "textOutput": lambda b: TextOutput(str(b.get("contentId", "")), str(b.get("role", "")),
                                       str(b.get("content", ""))),
    "audioOutput": lambda b: AudioOutput(str(b.get("contentId", "")),
                                         base64.b64decode(b["content"])),
    "toolUse": lambda b: ToolUse(str(b.get("contentId", "")), str(b["toolUseId"]),
                                 str(b["toolName"]), unwrap_arguments(str(b.get("content", "{}")))),
    "contentEnd": lambda b: ContentEnd(str(b.get("contentId", "")), str(b.get("type", "")),
                                       str(b.get("stopReason", ""))),
    "usageEvent": _usage,
    "completionEnd": lambda b: CompletionEnd(str(b.get("stopReason", ""))),
}


def parse_output(event: dict[str, Any]) -> OutputEvent | None:
    """A typed output event, or ``None`` (logged) for one we do not know or cannot read."""
    body = event.get("event")
    if not isinstance(body, dict) or len(body) != 1:
        log.debug("nova: skipping malformed event %r", event)
        return None
    ((name, fields),) = body.items()
    parser = _PARSERS.get(name)
    if parser is None or not isinstance(fields, dict):
        log.debug("nova: skipping unknown event %s", name)
        return None
    try:
        return parser(fields)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("nova: skipping unreadable %s event: %s", name, exc)
        return None


# ---------------------------------------------------------------- the chunk envelope


# The exceptions a stream can carry, as the Bedrock model names the members of its
# ``InvokeModelWithBidirectionalStreamOutput`` union: lower camel case, the spelling
# the ``:exception-type`` header carries. (``ValidationException`` with a capital is
# the *HTTP* error type of a refused request, in ``x-amzn-errortype``, not this.)
MODEL_TIMEOUT = "modelTimeoutException"
VALIDATION = "validationException"
THROTTLING = "throttlingException"
INTERNAL_SERVER = "internalServerException"
MODEL_STREAM_ERROR = "modelStreamErrorException"
SERVICE_UNAVAILABLE = "serviceUnavailableException"
STREAM_EXCEPTIONS = frozenset({MODEL_TIMEOUT, VALIDATION, THROTTLING, INTERNAL_SERVER,
                               MODEL_STREAM_ERROR, SERVICE_UNAVAILABLE})


@dataclass(slots=True)
class ServiceException:
    """An exception message from the service (``validationException``,
    ``modelTimeoutException``…; see ``STREAM_EXCEPTIONS``)."""

    kind: str
    message: str


_CHUNK_HEADERS = {":message-type": "event", ":event-type": "chunk",
                  ":content-type": "application/json"}


def chunk_message(event: dict[str, Any]) -> bytes:
    """One Nova event as an encoded event-stream ``chunk`` message."""
    inner = base64.b64encode(orjson.dumps(event))
    return encode_message(_CHUNK_HEADERS, b'{"bytes":"' + inner + b'"}')


def exception_message(kind: str, message: str) -> bytes:
    """An encoded exception message, as the service sends a fault mid-stream."""
    headers = {":message-type": "exception", ":exception-type": kind,
               ":content-type": "application/json"}
    return encode_message(headers, orjson.dumps({"message": message}))


def read_message(message: Message) -> dict[str, Any] | ServiceException | None:
    """The Nova event a decoded message carries, the exception it reports, or ``None``
    (logged) when it is neither."""
    kind = message.headers.get(":message-type")
    if kind == "exception":
        return ServiceException(str(message.headers.get(":exception-type", "Exception")),
                                _error_text(message.payload))
    if kind == "error":
        return ServiceException(str(message.headers.get(":error-code", "Error")),
                                str(message.headers.get(":error-message", "")))
    if kind != "event" or message.headers.get(":event-type") != "chunk":
        log.debug("nova: skipping message with headers %r", message.headers)
        return None
    try:
        wrapper = orjson.loads(message.payload)
        event = orjson.loads(base64.b64decode(wrapper["bytes"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("nova: skipping unreadable chunk: %s", exc)
        return None
    return event if isinstance(event, dict) else None


def _error_text(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")
    if isinstance(body, dict):
        return str(body.get("message") or body.get("Message") or body)
    return str(body)
