"""The text step over an OpenAI-protocol realtime model in text modality.

The cascade uses the agent's own realtime model (OpenAI, Azure OpenAI, xAI) as its
text step: the same adapter as a voice call, opened with ``output_modalities: ["text"]``
and turn detection off — no audio is ever sent, turns come from our own VAD and STT.
This class only translates: assistant transcript deltas become ``TextDelta``;
``ToolCall``, ``ResponseDone`` and ``SessionError`` pass through. The adapter keeps
its reconnect-and-replay behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agentplatform.realtime.base import (
    ResponseDone,
    SessionError,
    ToolCall,
    Transcript,
)
from agentplatform.realtime.openai_realtime import OpenAIRealtimeSession
from agentplatform.text.base import TextDelta, TextSession

logger = logging.getLogger(__name__)

# How long a cancel waits for the server to confirm the response ended.
CANCEL_WAIT_SECONDS = 3.0


class RealtimeTextSession(TextSession):
    """A ``TextSession`` over a realtime adapter opened in text modality."""

    def __init__(self, adapter: OpenAIRealtimeSession) -> None:
        super().__init__()
        self.adapter = adapter
        self._pump: asyncio.Task[None] | None = None
        self._in_flight = False  # a response was asked for and has not ended
        self._idle = asyncio.Event()  # set whenever no response is in flight
        self._idle.set()
        self._dropping = False  # cancelled: swallow its events until its ResponseDone
        self._pending: set[str] = set()  # tool calls still waiting for a result
        self._message: dict[str, Any] | None = None  # the assistant message streaming now
        self._last_item = ""  # the server's id of the last assistant message
        self._unsent: list[str] = []  # add_assistant lines not yet sent to the server
        if adapter.setup.instructions:
            self.history.append({"role": "system", "content": adapter.setup.instructions})

    async def connect(self) -> None:
        await self.adapter.connect()
        self._pump = asyncio.create_task(self._run(), name="realtime-text-pump")

    async def send_user(self, text: str) -> None:
        await self.cancel()
        await self._flush()
        self.history.append({"role": "user", "content": text})
        self._set_in_flight(True)
        await self.adapter.send_text(text, respond=True)

    async def respond(self, instructions: str | None = None) -> None:
        await self.cancel()
        await self._flush()
        self._set_in_flight(True)
        await self.adapter.request_response(instructions)

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self.history.append({"role": "tool", "tool_call_id": call_id, "content": output})
        self._pending.discard(call_id)
        last = not self._pending
        if last:
            self._set_in_flight(True)
        await self.adapter.send_tool_result(call_id, name, output, respond=last)

    async def cancel(self) -> None:
        """Cancel, and wait (briefly) for the server to end that response: it accepts no
        new ``response.create`` while one is still active."""
        if not self._in_flight:
            return
        if not self._dropping:
            self._dropping = True
            await self.adapter.cancel_response()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                await self._idle.wait()

    async def set_heard(self, text: str) -> None:
        if not self._trim_last_assistant(text) or not self._last_item:
            return
        item_id, self._last_item = self._last_item, ""
        await self.adapter.replace_assistant(item_id, text.strip())

    def add_assistant(self, text: str) -> None:
        """Kept here now, and sent to the server (so the model knows it said this) before
        whatever is sent next — in order, since this method cannot await."""
        super().add_assistant(text)
        self._unsent.append(text)

    async def _flush(self) -> None:
        lines, self._unsent = self._unsent, []
        for text in lines:
            await self.adapter.add_assistant_text(text)

    async def close(self) -> None:
        await self.adapter.close()
        pump, self._pump = self._pump, None
        if pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self._end_events()

    # ------------------------------------------------------------ translating events

    async def _run(self) -> None:
        try:
            async for event in self.adapter.events():
                await self._on_event(event)
        finally:
            self._end_events()

    async def _on_event(self, event: object) -> None:
        if isinstance(event, Transcript) and event.role == "assistant":
            await self._on_transcript(event)
        elif isinstance(event, ToolCall):
            if self._dropping:
                return
            message = self._current()
            message.setdefault("tool_calls", []).append({
                "id": event.call_id, "type": "function",
                "function": {"name": event.name, "arguments": event.arguments}})
            self._pending.add(event.call_id)
            self._emit(event)
        elif isinstance(event, ResponseDone):
            self._end_message()
            if self._dropping:
                self._dropping = False
                event = ResponseDone(status="cancelled", usage=event.usage)
            self._set_in_flight(False)
            self._emit(event)
        elif isinstance(event, SessionError):
            self._emit(event)

    async def _on_transcript(self, event: Transcript) -> None:
        if event.item_id:
            self._last_item = event.item_id
        if self._dropping:
            # The cancel may have gone out before the server had started the response;
            # now that it is speaking, cancel again (the adapter sends it only once).
            await self.adapter.cancel_response()
            return
        message = self._current()
        if event.final:
            if event.text:
                message["content"] = event.text
        elif event.text:
            message["content"] = (message.get("content") or "") + event.text
            self._emit(TextDelta(event.text))

    def _set_in_flight(self, value: bool) -> None:
        self._in_flight = value
        if value:
            self._idle.clear()
        else:
            self._idle.set()

    def _current(self) -> dict[str, Any]:
        if self._message is None:
            self._message = {"role": "assistant", "content": ""}
            self.history.append(self._message)
        return self._message

    def _end_message(self) -> None:
        message, self._message = self._message, None
        if message is not None and not message.get("content"):
            if message.get("tool_calls"):
                message["content"] = None
            else:
                self.history.remove(message)

