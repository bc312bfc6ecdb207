"""The text step over any OpenAI-compatible chat-completions endpoint.

OpenAI itself, or a local server such as Ollama or llama.cpp: ``POST {url}/chat/completions``
with ``stream: true``, read as server-sent events. The session keeps the conversation
(the endpoint is stateless) and streams each answer as ``TextDelta``s; tool calls arrive
as pieces keyed by ``index`` and are put together before a ``ToolCall`` goes out. Once
every pending call has its result, the session posts again to continue the answer.

``max_tokens`` rather than ``max_completion_tokens``: OpenAI deprecated the former but
still accepts it for non-reasoning models, while Ollama's and llama.cpp's compatibility
layers have long documented only ``max_tokens``. When a server refuses it by name (OpenAI's
reasoning models answer 400 ``param: max_tokens``), the session switches to
``max_completion_tokens`` for good and retries once.

Cancelling (barge-in) cancels the response task, which closes the HTTP stream: the
server sees the client hang up and stops generating.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from agentplatform.errors import ModelConnectError
from agentplatform.realtime.base import ResponseDone, SessionError, ToolCall, ToolSpec, Usage
from agentplatform.text.base import TaskResponses, TextDelta

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=5.0)


class _StreamError(Exception):
    """The endpoint failed this request; carries the ``SessionError`` to emit."""

    def __init__(self, code: str, message: str, *, fatal: bool, param: str | None = None):
        super().__init__(message)
        self.code, self.fatal, self.param = code, fatal, param


@dataclass(slots=True)
class _PartialCall:
    """A tool call being put together from streamed pieces."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- pure wire functions


def tools_param(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details") or {}
    return Usage(input_text=int(raw.get("prompt_tokens") or 0),
                 input_cached=int(details.get("cached_tokens") or 0),
                 output_text=int(raw.get("completion_tokens") or 0))


def error_of(status: int, raw: bytes) -> _StreamError:
    """An HTTP error response as a ``_StreamError``, from OpenAI's ``{"error": …}`` body
    when there is one. Refused keys, unknown URLs and bad requests are fatal (every retry
    would fail the same way); rate limits and server errors are not."""
    message, code, param = raw.decode("utf-8", "replace").strip()[:300], f"http_{status}", None
    try:
        body = orjson.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = str(err.get("code") or err.get("type") or code)
            param = err.get("param")
        elif isinstance(err, str):
            message = err
    except orjson.JSONDecodeError:
        pass
    if status in (401, 403):
        return _StreamError("unauthorized", f"the endpoint refused the key (HTTP {status}): "
                            f"{message}", fatal=True)
    fatal = status < 500 and status != 429
    return _StreamError(code, f"HTTP {status}: {message}", fatal=fatal, param=param)


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` payloads of a server-sent event stream (comments and other fields
    skipped; multi-line data joined), ending at ``[DONE]`` or the end of the stream."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    return
                yield payload
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data and "\n".join(data).strip() != "[DONE]":
        yield "\n".join(data)


# ---------------------------------------------------------------- the session


class ChatCompletionsSession(TaskResponses):
    """One conversation with an OpenAI-compatible chat-completions endpoint."""

    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key: str = "",
        instructions: str = "",
        tools: list[ToolSpec] | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._tools = list(tools or [])
        self._temperature = temperature
        self._max_tokens = max_output_tokens
        self._max_tokens_field = "max_tokens"
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._pending: set[str] = set()  # tool calls still waiting for a result
        if instructions:
            self.history.append({"role": "system", "content": instructions})

    # ------------------------------------------------------------ the interface

    async def connect(self) -> None:
        """Check the endpoint answers and takes the key (``GET {url}/models``).

        Servers without a models list (404 and the like) are accepted: only an
        unreachable endpoint or a refused key means it cannot be used at all.
        """
        try:
            response = await self._http.get(f"{self.url}/models", headers=self._headers,
                                            timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise ModelConnectError(f"cannot reach chat endpoint {self.url}: "
                                    f"{_describe(exc)}") from exc
        if response.status_code in (401, 403):
            raise ModelConnectError(str(error_of(response.status_code, response.content)))

    async def send_user(self, text: str) -> None:
        await self.cancel()
        self.history.append({"role": "user", "content": text})
        self._start(self._respond())

    async def respond(self, instructions: str | None = None) -> None:
        await self.cancel()
        self._start(self._respond(instructions))

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self.history.append({"role": "tool", "tool_call_id": call_id, "content": output})
        self._pending.discard(call_id)
        if not self._pending:
            await self.cancel()
            self._start(self._respond())

    async def set_heard(self, text: str) -> None:
        self._trim_last_assistant(text)

    async def close(self) -> None:
        await super().close()
        if self._own_http:
            await self._http.aclose()

    # ------------------------------------------------------------ one response

    def request_body(self, instructions: str | None = None) -> dict[str, Any]:
        messages = list(self.history)
        if instructions:
            # A one-off nudge (the greeting, a goodbye): sent, not kept.
            messages.append({"role": "system", "content": instructions})
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self._tools:
            body["tools"] = tools_param(self._tools)
        if self._temperature is not None:
            body["temperature"] = self._temperature
        if self._max_tokens is not None:
            body[self._max_tokens_field] = self._max_tokens
        return body

    async def _respond(self, instructions: str | None = None) -> None:
        body = self.request_body(instructions)
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        self.history.append(message)
        try:
            try:
                usage = await self._stream(body, message)
            except _StreamError as exc:
                if exc.param != "max_tokens" or self._max_tokens_field != "max_tokens":
                    raise
                logger.info("chat endpoint refuses max_tokens; using max_completion_tokens")
                self._max_tokens_field = "max_completion_tokens"
                body[self._max_tokens_field] = body.pop("max_tokens")
                usage = await self._stream(body, message)
        except _StreamError as exc:
            self.history.remove(message)
            self._emit(SessionError(code=exc.code, message=str(exc), fatal=exc.fatal))
            self._emit(ResponseDone(status="failed", usage=None))
            return
        finally:
            if not message["content"] and not message.get("tool_calls") \
                    and message in self.history:
                self.history.remove(message)
        self._emit(ResponseDone(status="completed", usage=usage))

    async def _stream(self, body: dict[str, Any], message: dict[str, Any]) -> Usage | None:
        """POST and read the answer, filling ``message`` as it streams."""
        calls: dict[int, _PartialCall] = {}
        usage: Usage | None = None
        finish: str | None = None
        try:
            async with self._http.stream("POST", f"{self.url}/chat/completions",
                                         json=body, headers=self._headers,
                                         timeout=self._timeout) as response:
                if response.status_code >= 400:
                    raise error_of(response.status_code, await response.aread())
                async for payload in sse_data(response.aiter_lines()):
                    chunk = _parse_chunk(payload)
                    usage = usage_of(chunk.get("usage")) or usage
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        self._on_delta(choice.get("delta") or {}, message, calls)
        except httpx.HTTPError as exc:
            fatal = isinstance(exc, httpx.ConnectError)
            raise _StreamError("connect_failed" if fatal else "stream_failed",
                               f"chat endpoint {self.url}: {_describe(exc)}",
                               fatal=fatal) from exc
        # Some local servers report "stop" with finished tool calls; the calls decide.
        if calls and finish in ("tool_calls", "stop", "function_call", None):
            self._finish_calls(calls, message)
        return usage

    def _on_delta(self, delta: dict[str, Any], message: dict[str, Any],
                  calls: dict[int, _PartialCall]) -> None:
        text = delta.get("content")
        if isinstance(text, str) and text:
            message["content"] += text
            self._emit(TextDelta(text))
        for piece in delta.get("tool_calls") or []:
            index = _call_index(piece, calls)
            call = calls.setdefault(index, _PartialCall())
            call.id = call.id or str(piece.get("id") or "")
            function = piece.get("function") or {}
            call.name = call.name or str(function.get("name") or "")
            if function.get("arguments"):
                call.arguments.append(str(function["arguments"]))

    def _finish_calls(self, calls: dict[int, _PartialCall], message: dict[str, Any]) -> None:
        finished = []
        for index in sorted(calls):
            call = calls[index]
            if not call.name:
                logger.warning("chat endpoint streamed a tool call with no name; skipped")
                continue
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            finished.append(ToolCall(call_id=call_id, name=call.name,
                                     arguments="".join(call.arguments) or "{}"))
        if not finished:
            return
        message["tool_calls"] = [{"id": c.call_id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in finished]
        if not message["content"]:
            message["content"] = None
        for call in finished:
            self._pending.add(call.call_id)
            self._emit(call)


def _call_index(piece: dict[str, Any], calls: dict[int, _PartialCall]) -> int:
    """The call a streamed piece belongs to: its ``index``; servers that leave the index
    out start a call with an id or a name and continue the last one otherwise."""
    if isinstance(piece.get("index"), int):
        return int(piece["index"])
    starts = piece.get("id") or (piece.get("function") or {}).get("name")
    if starts or not calls:
        return max(calls, default=-1) + 1
    return max(calls)


def _parse_chunk(payload: str) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _StreamError("malformed_stream", "chat endpoint sent an event that is not "
                           f"JSON: {payload[:80]!r}", fatal=False) from None
    if not isinstance(chunk, dict):
        raise _StreamError("malformed_stream", "chat endpoint sent an event that is not a "
                           "JSON object", fatal=False)
    if isinstance(chunk.get("error"), dict | str):
        err = chunk["error"]
        text = err.get("message") if isinstance(err, dict) else err
        raise _StreamError("stream_error", f"chat endpoint error mid-stream: {text}",
                           fatal=False)
    return chunk


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
