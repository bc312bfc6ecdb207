"""A protocol-faithful OpenAI-compatible chat-completions server on a real loopback socket.

Why: the text step talks to "any OpenAI-compatible endpoint" (OpenAI itself, a local
Ollama or llama.cpp). Tests need one that streams exactly like OpenAI — SSE
``data: {chunk}`` lines over chunked HTTP/1.1, tool calls streamed in pieces, a usage
chunk, ``data: [DONE]``, OpenAI's error bodies — with no network or key.

    async with ChatCompletionsServer(api_key="k", tool_rules=[ChatToolRule("book", "book")]) as s:
        ...POST s.base_url + "/chat/completions" with "Authorization: Bearer k"...
        s.requests, s.streams     # what the client sent, and how each stream ended

Replies: when the last message is the user's and contains a tool rule's word (and the
request offers that tool), a tool call; otherwise the next scripted text, or after a
tool result ``"Done: <output>"``, or a default line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

logger = logging.getLogger(__name__)

DEFAULT_REPLY = "This is the simulated chat model. How can I help you today?"
# Top-level request fields OpenAI's chat-completions endpoint accepts.
KNOWN_FIELDS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities",
    "n", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier",
    "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}
_IDS = itertools.count(1)


@dataclass(slots=True)
class ChatToolRule:
    """When the user's latest message contains ``contains``, call ``name`` with
    ``arguments`` (JSON text), streamed in ``pieces`` argument fragments."""

    contains: str
    name: str
    arguments: str = "{}"
    pieces: int = 3


@dataclass(slots=True)
class StreamRecord:
    """One streamed response: the request behind it and how it ended."""

    body: dict[str, Any]
    chunks: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False  # ``data: [DONE]`` was sent
    client_closed: bool = False  # the client hung up before the end


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param,
                          "code": self.code}}


class ChatCompletionsServer:
    """The simulated endpoint; ``async with`` it, then point a client at ``base_url``."""

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        script: list[str] | None = None,
        tool_rules: list[ChatToolRule] | None = None,
        chunk_delay: float = 0.0,
        reject_max_tokens: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key  # None: no key needed (a local server)
        self.script = list(script or [])
        self.tool_rules = list(tool_rules or [])
        self.chunk_delay = chunk_delay
        # OpenAI's reasoning models refuse ``max_tokens`` (they want max_completion_tokens).
        self.reject_max_tokens = reject_max_tokens
        self.host, self.port = host, port
        # Fault injection: HTTP statuses for the next requests; a broken SSE line next.
        self.fail_next: list[int] = []
        self.malformed_next = False
        # What clients did.
        self.requests: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = []
        self.streams: list[StreamRecord] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            for task in list(self._handlers):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ChatCompletionsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ HTTP/1.1

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        raw = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        body: dict[str, Any] | None = None
        try:
            if raw:
                decoded = orjson.loads(raw)
                body = decoded if isinstance(decoded, dict) else None
                if body is None:
                    raise _BadRequest(400, "The request body must be a JSON object.")
            self.requests.append((method, path, headers, body))
            self._check_auth(headers)
            if self.fail_next:
                status = self.fail_next.pop(0)
                raise _BadRequest(status, f"The server had an error ({status}).", "server_error")
            route = path.split("?", 1)[0].rstrip("/")
            if method == "GET" and route == "/v1/models":
                await self._json(writer, 200, {"object": "list", "data": [
                    {"id": "sim-model", "object": "model", "created": 0, "owned_by": "sim"}]})
            elif method == "POST" and route == "/v1/chat/completions":
                await self._chat(reader, writer, self._check_body(body))
            else:
                raise _BadRequest(404, f"Invalid URL ({method} {path})", code="unknown_url")
        except orjson.JSONDecodeError:
            self.requests.append((method, path, headers, None))
            await self._json(writer, 400, _BadRequest(
                400, "We could not parse the JSON body of your request.").body())
        except _BadRequest as exc:
            await self._json(writer, exc.status, exc.body())
        return headers.get("connection", "").lower() != "close"

    def _check_auth(self, headers: dict[str, str]) -> None:
        if self.api_key is None:
            return
        auth = headers.get("authorization", "")
        given = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if not given:
            raise _BadRequest(401, "You didn't provide an API key. You need to provide your "
                              "API key in an Authorization header using Bearer auth.")
        if given != self.api_key:
            raise _BadRequest(401, f"Incorrect API key provided: {given[:3]}***. You can find "
                              "your API key in your account settings.", code="invalid_api_key")

    def _check_body(self, body: dict[str, Any] | None) -> dict[str, Any]:
        if body is None:
            raise _BadRequest(400, "Missing request body.")
        for key in body:
            if key not in KNOWN_FIELDS:
                raise _BadRequest(400, f"Unrecognized request argument supplied: {key}")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _BadRequest(400, "you must provide a model parameter", param="model")
        if body.get("stream") is not True:
            raise _BadRequest(400, "This simulator only streams: set stream to true.",
                              param="stream")
        if self.reject_max_tokens and "max_tokens" in body:
            raise _BadRequest(400, "Unsupported parameter: 'max_tokens' is not supported with "
                              "this model. Use 'max_completion_tokens' instead.",
                              param="max_tokens", code="unsupported_parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest(400, "'messages' must be a non-empty array.", param="messages")
        open_calls: set[str] = set()
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise _BadRequest(400, f"Invalid value for 'messages[{i}].role'.",
                                  param=f"messages[{i}].role")
            for call in message.get("tool_calls") or []:
                open_calls.add(str(call.get("id")))
            if message["role"] == "tool":
                if message.get("tool_call_id") not in open_calls:
                    raise _BadRequest(400, "Invalid parameter: messages with role 'tool' must "
                                      "be a response to a preceeding message with "
                                      "'tool_calls'.", param=f"messages.[{i}].role")
                open_calls.discard(message["tool_call_id"])
        for tool in body.get("tools") or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict) \
                    or not function.get("name"):
                raise _BadRequest(400, f"Invalid tool {tool!r}.", param="tools")
        return body

    async def _json(self, writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
        data = orjson.dumps(body)
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode()
            + data)
        await writer.drain()

    # ------------------------------------------------------------ streaming a reply

    async def _chat(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    body: dict[str, Any]) -> None:
        record = StreamRecord(body=body)
        self.streams.append(record)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                     b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n")
        hung_up = asyncio.create_task(_wait_eof(reader))
        try:
            for line in self._sse_lines(body, record):
                if hung_up.done():
                    record.client_closed = True
                    return
                writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                await writer.drain()
                if self.chunk_delay:
                    await asyncio.wait({hung_up}, timeout=self.chunk_delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            record.completed = True
        except ConnectionError:
            record.client_closed = True
            raise
        finally:
            if not hung_up.done():
                hung_up.cancel()
            elif record.client_closed:
                raise ConnectionResetError("client closed the stream")

    def _sse_lines(self, body: dict[str, Any], record: StreamRecord):  # type: ignore[no-untyped-def]
        """The SSE lines of one answer, as OpenAI sends them."""
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body["model"],
                "system_fingerprint": "fp_sim", "service_tier": "default"}
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish}]}
            if with_usage:
                event["usage"] = None
            record.chunks.append(event)
            return b"data: " + orjson.dumps(event) + b"\n\n"

        if self.malformed_next:
            self.malformed_next = False
            yield b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
            return
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        tool = self._tool_for(body)
        out_text = ""
        if tool is not None:
            call_id = f"call_{uuid.uuid4().hex[:24]}"
            yield chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                         "function": {"name": tool.name, "arguments": ""}}]})
            size = max(1, -(-len(tool.arguments) // max(1, tool.pieces)))
            for start in range(0, len(tool.arguments), size):
                piece = tool.arguments[start:start + size]
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            out_text = tool.arguments
            yield chunk({}, "tool_calls")
        else:
            out_text = self._text_for(body)
            for i, word in enumerate(out_text.split()):
                yield chunk({"content": word if i == 0 else " " + word})
            yield chunk({}, "stop")
        if with_usage:
            prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 1
            completion = len(out_text) // 4 + 1
            usage = {**base, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}}
            record.chunks.append(usage)
            yield b"data: " + orjson.dumps(usage) + b"\n\n"
        yield b"data: [DONE]\n\n"

    def _tool_for(self, body: dict[str, Any]) -> ChatToolRule | None:
        last = body["messages"][-1]
        if last.get("role") != "user":
            return None
        offered = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
        text = _content_text(last).lower()
        for rule in self.tool_rules:
            if rule.contains.lower() in text and rule.name in offered:
                return rule
        return None

    def _text_for(self, body: dict[str, Any]) -> str:
        if self.script:
            return self.script.pop(0)
        last = body["messages"][-1]
        if last.get("role") == "tool":
            return f"Done: {_content_text(last)}"
        return DEFAULT_REPLY


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


async def _wait_eof(reader: asyncio.StreamReader) -> None:
    """Return when the client closes its side (it sends nothing while it reads a stream)."""
    while await reader.read(1024):
        pass
