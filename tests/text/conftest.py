"""Shared by the text-step tests: read a session's events up to a point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentplatform.realtime.base import ResponseDone
from agentplatform.text.base import TextDelta, TextEvent, TextSession


class Feed:
    """Reads one session's event stream, with a hang guard."""

    def __init__(self, session: TextSession) -> None:
        self._events: AsyncIterator[TextEvent] = session.events()

    async def next(self) -> TextEvent:
        async with asyncio.timeout(10):
            return await anext(self._events)

    async def response(self) -> list[TextEvent]:
        """Events up to and including the next ``ResponseDone``."""
        seen: list[TextEvent] = []
        while True:
            event = await self.next()
            seen.append(event)
            if isinstance(event, ResponseDone):
                return seen


def text_of(events: list[TextEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
def feed_of():
    return Feed
