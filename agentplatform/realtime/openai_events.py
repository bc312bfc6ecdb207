"""OpenAI Realtime (GA) wire events: pure build and parse functions, no I/O.

The session class in ``openai_realtime.py`` owns the socket; everything here turns
a ``SessionSetup`` or a bridge request into the JSON the server expects, or a
server event into the pieces the adapter normalizes. Keeping these pure lets the
tests check every shape without a socket, and lets the xAI dialect reuse them.

GA notes: the session needs ``type: "realtime"``; audio formats, voice, turn
detection and transcription live under ``session.audio``; there is no
``temperature`` in the GA schema, so it is left out even when an agent sets it.
"""

from __future__ import annotations

import base64
import copy
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from agentplatform.realtime.base import AudioFormat, HistoryItem, SessionSetup, ToolSpec, Usage

DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"

# Milliseconds of audio per byte count, by wire format: PCM16 at 24 kHz is 48 bytes/ms,
# G.711 μ-law at 8 kHz is 8 bytes/ms.
BYTES_PER_MS: dict[AudioFormat, int] = {"pcm16": 48, "g711_ulaw": 8}

# The agent's turn-detection fields that server_vad takes (semantic_vad takes eagerness).
_SERVER_VAD_FIELDS = ("threshold", "prefix_padding_ms", "silence_duration_ms")


# ---------------------------------------------------------------- URLs


def _ws_scheme(url: str) -> str:
    """Azure endpoints are given as https://; the realtime socket wants wss://."""
    if url.startswith("https://"):
        return "wss://" + url[len("https://"):]
    if url.startswith("http://"):
        return "ws://" + url[len("http://"):]
    return url


def with_model_query(url: str, model: str) -> str:
    """``url`` with ``model=<model>`` added, keeping any query it already has.

    A URL that already names a model or deployment (Azure preview) is left alone,
    since the server would see two conflicting names otherwise.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key in ("model", "deployment") for key, _ in query):
        return url
    query.append(("model", model))
    return urlunsplit(parts._replace(query=urlencode(query)))


def azure_realtime_url(endpoint: str, deployment: str, api_version: str | None = None) -> str:
    """The Azure OpenAI realtime socket URL for a deployment.

    GA (no api version): ``{endpoint}/openai/v1/realtime?model=DEPLOYMENT``.
    Preview (api version given): ``{endpoint}/openai/realtime?api-version=V&deployment=D``.
    """
    base = _ws_scheme(endpoint.rstrip("/"))
    if api_version:
        query = urlencode({"api-version": api_version, "deployment": deployment})
        return f"{base}/openai/realtime?{query}"
    return f"{base}/openai/v1/realtime?{urlencode({'model': deployment})}"


def auth_headers(setup: SessionSetup) -> dict[str, str]:
    """Headers that authenticate the upgrade: bearer, Azure ``api-key``, or Entra."""
    token = setup.extra.get("azure_ad_token")
    if token:
        return {"Authorization": f"Bearer {token}"}
    if setup.auth == "api-key":
        return {"api-key": setup.api_key}
    return {"Authorization": f"Bearer {setup.api_key}"}


def session_url(setup: SessionSetup) -> str:
    """Where to connect: Azure when an endpoint is given, else ``setup.url`` + model.

    The Azure deployment is ``extra['deployment']``, else the advanced JSON's
    ``deployment``, else the model's wire name.
    """
    endpoint = setup.extra.get("endpoint")
    if endpoint:
        nested = setup.advanced.get("openai_realtime")
        advanced = nested if isinstance(nested, dict) else setup.advanced
        deployment = setup.extra.get("deployment") or advanced.get("deployment") or setup.model
        return azure_realtime_url(endpoint, deployment, setup.extra.get("api_version"))
    return with_model_query(setup.url, setup.model)


# ---------------------------------------------------------------- session.update


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` laid over it: dicts merge, the rest replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def advanced_overrides(advanced: dict[str, Any], key: str) -> dict[str, Any]:
    """The provider's advanced JSON, whether given bare or still under its key.

    ``deployment`` is a connection fact (Azure), not a session field, so it is dropped.
    """
    nested = advanced.get(key)
    chosen = nested if isinstance(nested, dict) else advanced
    return {k: v for k, v in chosen.items() if k != "deployment"}


def audio_format(fmt: AudioFormat) -> dict[str, Any]:
    if fmt == "g711_ulaw":
        return {"type": "audio/pcmu"}
    return {"type": "audio/pcm", "rate": 24000}


def turn_detection(td: dict[str, Any] | None) -> dict[str, Any] | None:
    """The agent's turn detection as the wire wants it; ``{"type": "none"}`` → manual."""
    td = dict(td or {"type": "server_vad"})
    kind = td.get("type", "server_vad")
    if kind in ("none", None):
        return None
    out: dict[str, Any] = {"type": kind}
    if kind == "semantic_vad":
        if "eagerness" in td:
            out["eagerness"] = td["eagerness"]
    else:
        out.update({k: td[k] for k in _SERVER_VAD_FIELDS if k in td})
    out["create_response"] = td.get("create_response", True)
    out["interrupt_response"] = td.get("interrupt_response", True)
    return out


def tools_config(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "name": t.name, "description": t.description,
         "parameters": t.parameters}
        for t in tools
    ]


def build_session(setup: SessionSetup, advanced_key: str = "openai_realtime") -> dict[str, Any]:
    """The GA ``session`` object for ``session.update``, advanced JSON merged last."""
    fmt = audio_format(setup.audio_format)
    audio_in: dict[str, Any] = {
        "format": fmt,
        "turn_detection": turn_detection(setup.turn_detection),
    }
    transcription_model = setup.extra.get("transcription_model", DEFAULT_TRANSCRIPTION_MODEL)
    if transcription_model:
        audio_in["transcription"] = {"model": transcription_model}
    audio_out: dict[str, Any] = {"format": dict(fmt)}
    if setup.voice:
        audio_out["voice"] = setup.voice
    session: dict[str, Any] = {
        "type": "realtime",
        "instructions": setup.instructions,
        "output_modalities": [setup.output_modality],
        "audio": {"input": audio_in, "output": audio_out},
    }
    if setup.max_output_tokens is not None:
        session["max_output_tokens"] = setup.max_output_tokens
    if setup.tools:
        session["tools"] = tools_config(setup.tools)
        session["tool_choice"] = "auto"
    return deep_merge(session, advanced_overrides(setup.advanced, advanced_key))


def session_update(session: dict[str, Any]) -> dict[str, Any]:
    return {"type": "session.update", "session": session}


# ---------------------------------------------------------------- other client events


def audio_append(audio: bytes) -> str:
    """``input_audio_buffer.append`` as ready-to-send text (the hot path: no dict, no dump)."""
    b64 = base64.b64encode(audio).decode("ascii")
    return '{"type":"input_audio_buffer.append","audio":"' + b64 + '"}'


def user_text_item(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": text}]},
    }


def assistant_text_item(text: str) -> dict[str, Any]:
    """A past assistant turn, replayed as text (GA content type ``output_text``)."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": text}]},
    }


def history_item(item: HistoryItem) -> dict[str, Any]:
    if item.role == "assistant":
        return assistant_text_item(item.text)
    return user_text_item(item.text)


def item_delete(item_id: str) -> dict[str, Any]:
    return {"type": "conversation.item.delete", "item_id": item_id}


def response_create(instructions: str | None = None) -> dict[str, Any]:
    if instructions:
        return {"type": "response.create", "response": {"instructions": instructions}}
    return {"type": "response.create"}


def tool_output(call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {"type": "conversation.item.truncate", "item_id": item_id,
            "content_index": 0, "audio_end_ms": max(0, int(audio_end_ms))}


def response_cancel() -> dict[str, Any]:
    return {"type": "response.cancel"}


def dumps(event: dict[str, Any]) -> str:
    return orjson.dumps(event).decode("utf-8")


# ---------------------------------------------------------------- parsing


def parse(raw: str | bytes) -> dict[str, Any] | None:
    """One server event as a dict with a string ``type``, or None if malformed."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event


def usage(response: dict[str, Any]) -> Usage | None:
    """``response.usage`` normalized; None when the server reported none."""
    raw = response.get("usage")
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_token_details") or {}
    out = raw.get("output_token_details") or {}
    return Usage(
        input_text=int(inp.get("text_tokens") or 0),
        input_audio=int(inp.get("audio_tokens") or 0),
        input_cached=int(inp.get("cached_tokens") or 0),
        output_text=int(out.get("text_tokens") or 0),
        output_audio=int(out.get("audio_tokens") or 0),
    )


def error_fields(event: dict[str, Any]) -> tuple[str, str]:
    """(code, message) of an ``error`` event; the code falls back to the error type."""
    err = event.get("error") or {}
    if not isinstance(err, dict):
        return "error", str(err)
    code = err.get("code") or err.get("type") or "error"
    return str(code), str(err.get("message") or "")


def heard_text(text: str, heard_ms: int, total_ms: int) -> str:
    """The part of an assistant answer the caller heard, estimated by audio share.

    The server drops the unheard transcript but does not send what it kept, so the
    words are cut in proportion to the audio heard, and the cut is marked with "…".
    """
    if total_ms <= 0 or heard_ms >= total_ms:
        return text
    words = text.split()
    keep = int(len(words) * max(0, heard_ms) / total_ms)
    return (" ".join(words[:keep]) + " …").strip()
