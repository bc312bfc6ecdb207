"""The text-step seam: one conversation with a text model, spoken as ``TextSession``.

The cascade (VAD → STT → text → TTS) and chat both drive a ``TextSession``; they know
nothing about which engine answers. Events reuse the realtime seam's ``ToolCall``,
``ResponseDone`` and ``SessionError`` so tool handling and records stay the same in
both modes; only streamed text gets its own event, ``TextDelta``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from agentplatform.realtime.base import ResponseDone, SessionError, ToolCall


@dataclass(slots=True)
class TextDelta:
    """A piece of the assistant's answer, in order; the pieces joined are the answer."""

    text: str


TextEvent = TextDelta | ToolCall | ResponseDone | SessionError


class TextSession(abc.ABC):
    """One conversation with a text model. Keeps its own history (the system prompt is
    the instructions). One long-lived event stream per session.

    Each response ends with exactly one ``ResponseDone``; a response that stops for a
    tool call ends with ``ToolCall`` events first, and ``send_tool_result`` for every
    call continues the answer as a new response.
    """

    history: list[dict[str, Any]]

    def __init__(self) -> None:
        self.history = []
        self._queue: asyncio.Queue[TextEvent | None] = asyncio.Queue()
        self._ended = False

    @abc.abstractmethod
    async def connect(self) -> None:
        """Get ready to answer; raises ``ModelConnectError`` if the engine cannot be used."""

    @abc.abstractmethod
    async def send_user(self, text: str) -> None:
        """Append a user turn and start a response to it."""

    @abc.abstractmethod
    async def respond(self, instructions: str | None = None) -> None:
        """A response with no new user turn (the greeting, a goodbye)."""

    @abc.abstractmethod
    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        """Append a tool's result; once every pending call has one, the answer continues."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop the response in flight (barge-in): no further events for it except
        ``ResponseDone(status="cancelled")``. Nothing in flight: nothing happens."""

    @abc.abstractmethod
    async def set_heard(self, text: str) -> None:
        """The caller heard only ``text`` of the last assistant message; history keeps
        only that, so the model does not believe it said what was never heard."""

    def add_assistant(self, text: str) -> None:
        """An assistant line spoken without the model (a fixed greeting)."""
        self.history.append({"role": "assistant", "content": text})

    async def events(self) -> AsyncIterator[TextEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    @abc.abstractmethod
    async def close(self) -> None: ...

    # ------------------------------------------------------------ shared by subclasses

    def _emit(self, event: TextEvent) -> None:
        if not self._ended:
            self._queue.put_nowait(event)

    def _end_events(self) -> None:
        """Let ``events()`` finish, once."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def _last_assistant_index(self) -> int | None:
        for index in range(len(self.history) - 1, -1, -1):
            message = self.history[index]
            if message.get("role") == "assistant" and isinstance(message.get("content"), str) \
                    and message["content"]:
                return index
        return None

    def _trim_last_assistant(self, text: str) -> bool:
        """Replace the last spoken assistant message by ``text``; False if there is none."""
        index = self._last_assistant_index()
        if index is None:
            return False
        if text.strip():
            self.history[index] = {**self.history[index], "content": text}
        elif self.history[index].get("tool_calls"):
            self.history[index] = {**self.history[index], "content": None}
        else:
            del self.history[index]
        return True


class TaskResponses(TextSession):
    """A ``TextSession`` whose responses run as asyncio tasks owned by the session.

    Cancelling a response cancels its task; the task's own cleanup (closing an HTTP
    stream, for instance) runs, then exactly one ``ResponseDone(status="cancelled")``
    is emitted for it. A new response cancels one still running first, the way a
    caller who speaks again supersedes the answer in flight.
    """

    def __init__(self) -> None:
        super().__init__()
        self._task: asyncio.Task[None] | None = None

    def _start(self, body: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(self._guard(body), name="text-response")

    async def _guard(self, body: Coroutine[Any, Any, None]) -> None:
        try:
            await body
        except asyncio.CancelledError:
            self._emit(ResponseDone(status="cancelled", usage=None))

    @property
    def responding(self) -> bool:
        return self._task is not None and not self._task.done()

    async def cancel(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        await self.cancel()
        self._end_events()
