"""The offline rules responder: the text step when no language model is configured.

This is NOT a language model. It matches what the caller said against the agent's
``rules`` (case-insensitive regular expressions, first match wins) and says the
rule's fixed ``reply``, calls its ``tool``, and after the tool answers says
``after_tool`` with ``{output}`` (or ``{output.key}`` for a JSON result) filled in.
Nothing matches: ``fallback_reply``. It exists so the offline demo and the tests hold
a real spoken exchange — with tools and barge-in — with no key, model or network.

Replies stream word by word so the text-to-speech step downstream can start on the
first sentence while the rest is still "arriving", exactly as with a real model.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from agentplatform.agents.spec import Rule
from agentplatform.realtime.base import ResponseDone, ToolCall
from agentplatform.text.base import TaskResponses, TextDelta

logger = logging.getLogger(__name__)

# The bridge asks for its greeting in exactly this form (see bridge/call.py).
# A platform instruction (a greeting, a voicemail message, a failed transfer, an idle
# prompt) names the line to say; a caller's words never contain this form.
_SAY_EXACTLY = re.compile(r'Say (?:exactly|something like):\s*"(?P<line>.*)"', re.DOTALL)
_OUTPUT_FIELD = re.compile(r"\{output((?:\.[A-Za-z0-9_-]+)*)\}")
GOODBYE_LINE = "Thank you for calling. Goodbye."


def fill_output(template: str, output: str) -> str:
    """``template`` with ``{output}`` replaced by the tool's result, and ``{output.a.b}``
    by that field of a JSON result (empty, and logged, when the field is missing)."""
    parsed: Any = None
    try:
        parsed = orjson.loads(output)
    except orjson.JSONDecodeError:
        pass

    def lookup(match: re.Match[str]) -> str:
        path = [part for part in match.group(1).split(".") if part]
        if not path:
            return output
        value: Any = parsed
        for key in path:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                logger.warning("rules: tool output has no field %s", match.group(0))
                return ""
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    return _OUTPUT_FIELD.sub(lookup, template)


def _words(text: str) -> list[str]:
    """``text`` cut into deltas that join back to exactly ``text``."""
    return re.findall(r"\s*\S+", text)


class RulesSession(TaskResponses):
    """A deterministic responder over an agent's rules (not a language model)."""

    def __init__(self, rules: Sequence[Rule], fallback_reply: str, *,
                 instructions: str = "") -> None:
        super().__init__()
        self._rules = [(re.compile(rule.match, re.IGNORECASE), rule) for rule in rules]
        self._fallback = fallback_reply
        # Tool call id -> the rule that made it, until its result arrives.
        self._pending: dict[str, Rule] = {}
        if instructions:
            self.history.append({"role": "system", "content": instructions})

    async def connect(self) -> None:
        """Nothing to open: the rules are already compiled."""

    def match(self, text: str) -> Rule | None:
        for pattern, rule in self._rules:
            if pattern.search(text):
                return rule
        return None

    async def send_user(self, text: str) -> None:
        await self.cancel()
        said = _SAY_EXACTLY.search(text)
        if said is not None:
            # A note from the platform, not the caller's words: matching it against the
            # rules would answer the note (a failed transfer's note would ask for the
            # transfer again, and again). Say its line instead.
            self.history.append({"role": "system", "content": text})
            self._start(self._say(said.group("line")))
            return
        self.history.append({"role": "user", "content": text})
        self._start(self._answer(text))

    async def respond(self, instructions: str | None = None) -> None:
        await self.cancel()
        if instructions is None:
            last_user = next((m["content"] for m in reversed(self.history)
                              if m.get("role") == "user"), "")
            self._start(self._answer(str(last_user or "")))
            return
        said = _SAY_EXACTLY.search(instructions)
        self._start(self._say(said.group("line") if said else GOODBYE_LINE))

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self.history.append({"role": "tool", "tool_call_id": call_id, "content": output})
        rule = self._pending.pop(call_id, None)
        if rule is None:
            logger.warning("rules: result for unknown tool call %s ignored", call_id)
            return
        await self.cancel()
        self._start(self._say(fill_output(rule.after_tool or "", output)))

    async def set_heard(self, text: str) -> None:
        self._trim_last_assistant(text)

    # ------------------------------------------------------------ responses

    async def _answer(self, text: str) -> None:
        rule = self.match(text)
        if rule is None:
            await self._say(self._fallback)
            return
        message = await self._stream(rule.reply or "")
        if rule.tool is not None:
            call = ToolCall(call_id=f"call_{uuid.uuid4().hex[:24]}", name=rule.tool.name,
                            arguments=orjson.dumps(rule.tool.arguments).decode())
            if message is None:
                message = {"role": "assistant", "content": None}
                self.history.append(message)
            message["tool_calls"] = [{"id": call.call_id, "type": "function",
                                      "function": {"name": call.name,
                                                   "arguments": call.arguments}}]
            self._pending[call.call_id] = rule
            self._emit(call)
        self._emit(ResponseDone(status="completed", usage=None))

    async def _say(self, text: str) -> None:
        await self._stream(text)
        self._emit(ResponseDone(status="completed", usage=None))

    async def _stream(self, text: str) -> dict[str, Any] | None:
        """Stream ``text`` as deltas, keeping history true to what was streamed so far
        (a cancel mid-reply leaves only the words already out)."""
        if not text:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        self.history.append(message)
        try:
            for piece in _words(text):
                await asyncio.sleep(0)  # one delta per loop turn: a cancel lands between words
                message["content"] += piece
                self._emit(TextDelta(piece))
        finally:
            if not message["content"]:
                self.history.remove(message)
        return message
