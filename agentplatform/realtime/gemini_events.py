"""Gemini Live (BidiGenerateContent) wire messages: pure build and parse functions.

No I/O lives here, so every message the adapter sends can be checked in a unit test.
Messages are plain dicts in the wire's camelCase JSON, not SDK models: the audio path
sends fifty frames a second per call, and building a pydantic model per frame is
waste. Audio frames skip even the dict (``audio_frame`` formats the JSON text
directly); everything else is rare and goes through ``encode``.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Iterable
from typing import Any

import orjson

from agentplatform.realtime.base import HistoryItem, SessionSetup, ToolSpec, Usage

log = logging.getLogger(__name__)

INPUT_RATE = 16000
OUTPUT_RATE = 24000
INPUT_MIME = f"audio/pcm;rate={INPUT_RATE}"

# Keys of Gemini's OpenAPI-subset ``Schema``; anything else in an agent's JSON schema
# ("$schema", "additionalProperties", "const", ...) is dropped, because the service
# rejects unknown fields in a function declaration and closes the session.
_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "default", "example",
    "properties", "required", "propertyOrdering", "items", "minItems", "maxItems",
    "minimum", "maximum", "minLength", "maxLength", "pattern", "anyOf",
    "minProperties", "maxProperties",
})


def encode(message: dict[str, Any]) -> str:
    """Serialize one client message as the JSON text frame the service expects."""
    return orjson.dumps(message).decode("utf-8")


def audio_frame(pcm16: bytes) -> str:
    """``realtimeInput.audio`` for one chunk of 16 kHz PCM16, as JSON text.

    Formatted by hand: base64 output needs no escaping, and skipping the dict and the
    JSON encoder is the cheapest way to send the most frequent message there is.
    """
    data = base64.b64encode(pcm16).decode("ascii")
    return '{"realtimeInput":{"audio":{"mimeType":"' + INPUT_MIME + '","data":"' + data + '"}}}'


# ---------------------------------------------------------------- setup


def model_path(model: str) -> str:
    """The wire model name: ``models/<id>``; Vertex resource names pass unchanged."""
    if model.startswith(("models/", "projects/")):
        return model
    return f"models/{model}"


def vad_config(turn_detection: dict[str, Any] | None) -> dict[str, Any]:
    """Map the agent's turn detection onto ``automaticActivityDetection``.

    Gemini has two coarse knobs (HIGH/LOW) where the agent has a number and a word:
    - ``silence_duration_ms`` → ``silenceDurationMs``; ``prefix_padding_ms`` →
      ``prefixPaddingMs`` (same meaning, same unit).
    - ``server_vad``: ``threshold`` below 0.5 means "detect quieter speech", so
      start sensitivity HIGH; above 0.5 LOW; exactly 0.5 (the default) leaves the
      service's default. End of speech is governed by the silence duration.
    - ``semantic_vad``: eagerness ``high`` → start and end HIGH (answer sooner),
      ``low`` → both LOW (let the caller finish), ``medium``/``auto`` → defaults.
    """
    td = turn_detection or {}
    out: dict[str, Any] = {"disabled": False}
    if "prefix_padding_ms" in td:
        out["prefixPaddingMs"] = int(td["prefix_padding_ms"])
    if "silence_duration_ms" in td:
        out["silenceDurationMs"] = int(td["silence_duration_ms"])
    if td.get("type", "server_vad") == "semantic_vad":
        level = {"high": "HIGH", "low": "LOW"}.get(str(td.get("eagerness", "auto")))
        if level:
            out["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{level}"
            out["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{level}"
    else:
        threshold = float(td.get("threshold", 0.5))
        if threshold < 0.5:
            out["startOfSpeechSensitivity"] = "START_SENSITIVITY_HIGH"
        elif threshold > 0.5:
            out["startOfSpeechSensitivity"] = "START_SENSITIVITY_LOW"
    return out


def gemini_schema(schema: Any) -> Any:
    """Keep only the parts of a JSON schema that Gemini's ``Schema`` understands."""
    if isinstance(schema, list):
        return [gemini_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = gemini_schema(value)
        else:
            out[key] = value
    return out


def function_declarations(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    decls = []
    for tool in tools:
        decl: dict[str, Any] = {"name": tool.name, "description": tool.description}
        params = gemini_schema(tool.parameters)
        # An object with no properties is rejected by the service; omit it instead.
        if params and params.get("properties"):
            decl["parameters"] = params
        decls.append(decl)
    return decls


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in; nested dicts merge, the rest replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_setup(
    setup: SessionSetup, *, resume_handle: str | None = None, history_follows: bool = False
) -> dict[str, Any]:
    """The first message of every connection.

    ``sessionResumption`` is always asked for, so the service sends handles we can
    resume with after a ``goAway``; ``contextWindowCompression`` lifts the 15-minute
    cap on audio sessions. ``history_follows`` tells models that accept initial
    history only in that form (the 3.x live models) that the next ``clientContent``
    is history. The agent's ``advanced`` settings merge last and win.
    """
    generation: dict[str, Any] = {"responseModalities": ["AUDIO"]}
    if setup.temperature is not None:
        generation["temperature"] = setup.temperature
    if setup.max_output_tokens is not None:
        generation["maxOutputTokens"] = setup.max_output_tokens
    if setup.voice:
        generation["speechConfig"] = {
            "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": setup.voice}}
        }
    body: dict[str, Any] = {
        "model": model_path(setup.model),
        "generationConfig": generation,
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "realtimeInputConfig": {"automaticActivityDetection": vad_config(setup.turn_detection)},
        "sessionResumption": {"handle": resume_handle} if resume_handle else {},
        "contextWindowCompression": {"slidingWindow": {}},
    }
    if setup.instructions:
        body["systemInstruction"] = {"parts": [{"text": setup.instructions}]}
    if setup.tools:
        body["tools"] = [{"functionDeclarations": function_declarations(setup.tools)}]
    if history_follows and uses_realtime_text(setup.model):
        body["historyConfig"] = {"initialHistoryInClientContent": True}
    if setup.advanced:
        body = deep_merge(body, setup.advanced)
    return {"setup": body}


# ---------------------------------------------------------------- other client messages


def uses_realtime_text(model: str) -> bool:
    """Gemini 3.x live models take mid-session text as ``realtimeInput.text`` only."""
    return model.rsplit("/", 1)[-1].startswith("gemini-3")


def user_turn(text: str, *, turn_complete: bool = True) -> dict[str, Any]:
    """A user text turn; ``turnComplete`` true asks the model to answer it."""
    return {
        "clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}],
            "turnComplete": turn_complete,
        }
    }


def realtime_text(text: str) -> dict[str, Any]:
    return {"realtimeInput": {"text": text}}


def history_turns(history: Iterable[HistoryItem]) -> dict[str, Any] | None:
    """Past turns as context (``turnComplete`` false: the model must not answer them)."""
    turns = [
        {"role": "model" if item.role == "assistant" else "user", "parts": [{"text": item.text}]}
        for item in history
        if item.text
    ]
    if not turns:
        return None
    return {"clientContent": {"turns": turns, "turnComplete": False}}


def tool_response(call_id: str, name: str, output: str) -> dict[str, Any]:
    """``toolResponse`` for one call.

    Gemini wants ``response`` to be a JSON object, and reads its ``output`` and
    ``error`` keys. A tool result that is already such an object passes as is; any
    other JSON object is the output; anything else (plain text, a list, a number)
    is wrapped as ``{"output": <text or value>}``.
    """
    try:
        value: Any = json.loads(output)
    except ValueError:
        value = output
    if isinstance(value, dict) and ("output" in value or "error" in value):
        response = value
    else:
        response = {"output": value}
    return {"toolResponse": {"functionResponses": [{"id": call_id, "name": name, "response": response}]}}


# ---------------------------------------------------------------- server messages


def parse_message(raw: str | bytes) -> dict[str, Any] | None:
    """One server frame as a dict, or None (logged) if it is not a JSON object.

    The service sends JSON as binary frames as often as text frames; both parse.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.debug("gemini: skipping a frame that is not JSON: %.80r", raw)
        return None
    if not isinstance(value, dict):
        log.debug("gemini: skipping a frame that is not an object: %.80r", raw)
        return None
    return value


def audio_chunks(model_turn: dict[str, Any]) -> list[bytes]:
    """The PCM16 audio carried by the ``inlineData`` parts of a ``modelTurn``."""
    chunks = []
    for part in model_turn.get("parts") or ():
        inline = part.get("inlineData") if isinstance(part, dict) else None
        if not inline:
            continue
        mime = str(inline.get("mimeType", "audio/pcm"))
        if not mime.startswith("audio/pcm"):
            log.debug("gemini: skipping inline data of type %s", mime)
            continue
        try:
            # Protobuf JSON allows URL-safe base64 as well as the standard alphabet.
            chunks.append(base64.b64decode(inline.get("data", ""), altchars=b"-_"))
        except ValueError:
            log.debug("gemini: skipping undecodable inline audio")
    return chunks


def function_calls(tool_call: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(id, name, arguments as JSON text)`` for each call in a ``toolCall``."""
    calls = []
    for call in tool_call.get("functionCalls") or ():
        if not isinstance(call, dict) or not call.get("name"):
            log.debug("gemini: skipping a malformed function call: %r", call)
            continue
        args = call.get("args") or {}
        calls.append((str(call.get("id", "")), str(call["name"]), json.dumps(args)))
    return calls


def _by_modality(details: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in details or ():
        if isinstance(entry, dict):
            modality = str(entry.get("modality", "TEXT"))
            counts[modality] = counts.get(modality, 0) + int(entry.get("tokenCount", 0))
    return counts


def parse_usage(meta: dict[str, Any]) -> Usage:
    """Normalize ``usageMetadata`` (Vertex names the response side ``candidates``).

    Without per-modality details, the prompt count is taken as text and the response
    count as audio, since native-audio models answer only in audio.
    """
    prompt = _by_modality(meta.get("promptTokensDetails"))
    response = _by_modality(
        meta.get("responseTokensDetails") or meta.get("candidatesTokensDetails")
    )
    usage = Usage(input_cached=int(meta.get("cachedContentTokenCount", 0)))
    if prompt:
        usage.input_text = prompt.get("TEXT", 0)
        usage.input_audio = prompt.get("AUDIO", 0)
    else:
        usage.input_text = int(meta.get("promptTokenCount", 0))
    if response:
        usage.output_text = response.get("TEXT", 0)
        usage.output_audio = response.get("AUDIO", 0)
    else:
        usage.output_audio = int(
            meta.get("responseTokenCount", meta.get("candidatesTokenCount", 0))
        )
    return usage


def parse_duration(value: Any, default: float = 10.0) -> float:
    """Seconds in a protobuf Duration string (``"1s"``, ``"0.5s"``), else ``default``."""
    text = str(value or "").strip()
    if text.endswith("s"):
        text = text[:-1]
    try:
        seconds = float(text)
    except ValueError:
        return default
    return seconds if seconds >= 0 else default
