"""Callees of a campaign on the Twilio REST simulator, behaving as people do: a
person hears the agent's greeting and hangs up; a number scripted "busy, then
answers" is busy the first time only. Every call the simulator took is kept, so a
test can count how often each number was dialed and by which server."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from agentplatform.testing.twilio_rest_server import (
    Callee,
    SimulatedCall,
    TwilioRestServer,
)


class CampaignCallees:
    def __init__(self, twilio: TwilioRestServer, *, busy_first: set[str] = frozenset()) -> None:
        self.twilio = twilio
        self.busy_first = set(busy_first)
        self.heard_greeting: list[str] = []
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def dialed(self) -> Counter[str]:
        return Counter(call.to for call in self.twilio.calls.values())

    def placed_by(self) -> Counter[str]:
        """Calls by the server that placed them (the host of their status callback)."""
        return Counter(call.field("StatusCallback").split("/")[2]
                       for call in self.twilio.calls.values())

    async def _watch(self) -> None:
        while True:
            for call in list(self.twilio.calls.values()):
                if call.sid in self._seen:
                    continue
                self._seen.add(call.sid)
                if call.to in self.busy_first:
                    self.twilio.callees[call.to] = Callee("human")  # answers next time
                    self.busy_first.discard(call.to)
                if call.callee.kind == "human":
                    task = asyncio.create_task(self._listen_then_hang_up(call))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.02)

    async def _listen_then_hang_up(self, call: SimulatedCall) -> None:
        async with asyncio.timeout(20):
            while call.caller is None:
                await asyncio.sleep(0.02)
            await call.caller.wait_for_audio(15)
            self.heard_greeting.append(call.to)
            await call.caller.hang_up()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CampaignCallees]:
        watcher = asyncio.create_task(self._watch())
        try:
            yield self
        finally:
            watcher.cancel()
            for task in [watcher, *self._tasks]:
                task.cancel()
            await asyncio.gather(watcher, *self._tasks, return_exceptions=True)


def script(numbers: list[str], **kinds: list[str]) -> dict[str, Callee]:
    """Every number a person, except those listed under a kind (``machine=[…]``)."""
    callees = {n: Callee("human") for n in numbers}
    for kind, listed in kinds.items():
        for number in listed:
            callees[number] = Callee(kind, ring_seconds=0.1)  # type: ignore[arg-type]
    return callees
