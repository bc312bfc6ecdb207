"""Open chat conversations by id, for the web panel and the API.

A conversation holds a live model session, so it is kept in this process (a chat
client talks to one server) and closed when idle or when too many are open, oldest
first, so abandoned browser tabs cannot hold provider sessions forever.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentplatform.chat.session import ChatSession

IDLE_SECONDS = 15 * 60
MAX_OPEN = 50


@dataclass(slots=True)
class Conversation:
    id: str
    agent: str
    chat: ChatSession
    last_used: float


class Conversations:
    def __init__(self, *, idle_seconds: float = IDLE_SECONDS, max_open: int = MAX_OPEN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open: dict[str, Conversation] = {}
        self._idle = idle_seconds
        self._max = max_open
        self._clock = clock
        self._lock = asyncio.Lock()

    @staticmethod
    def new_id() -> str:
        return "chat_" + secrets.token_hex(12)

    async def get_or_open(self, conversation_id: str | None, agent: str,
                          opener: Callable[[str], Awaitable[ChatSession]]) -> Conversation:
        """The conversation ``conversation_id`` with ``agent``, or a new one.

        An unknown, expired or ended id (or one for another agent) starts a new
        conversation under a new id; the caller tells the client which id it got.
        """
        await self._expire()
        found = self._open.get(conversation_id or "")
        if found is not None and found.agent == agent and not found.chat.closed:
            found.last_used = self._clock()
            return found
        new_id = self.new_id()
        chat = await opener(new_id)
        conversation = Conversation(new_id, agent, chat, self._clock())
        async with self._lock:
            self._open[new_id] = conversation
            while len(self._open) > self._max:
                oldest = min(self._open.values(), key=lambda c: c.last_used)
                del self._open[oldest.id]
                await oldest.chat.close()
        return conversation

    async def close(self, conversation_id: str) -> bool:
        found = self._open.pop(conversation_id, None)
        if found is None:
            return False
        await found.chat.close()
        return True

    async def close_all(self) -> None:
        for conversation_id in list(self._open):
            await self.close(conversation_id)

    async def _expire(self) -> None:
        cutoff = self._clock() - self._idle
        for conversation in [c for c in self._open.values() if c.last_used < cutoff]:
            await self.close(conversation.id)

    def __len__(self) -> int:
        return len(self._open)
