"""Open chat conversations: kept by id, closed when idle or when too many are open."""

from __future__ import annotations

from agentplatform.chat.conversations import Conversations


class FakeChat:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_conversations_are_reused_by_id_and_closed_when_idle():
    now = [0.0]
    chats: list[FakeChat] = []

    async def opener(_id: str) -> FakeChat:
        chats.append(FakeChat())
        return chats[-1]

    store = Conversations(idle_seconds=60, max_open=10, clock=lambda: now[0])
    first = await store.get_or_open(None, "desk", opener)
    assert (await store.get_or_open(first.id, "desk", opener)) is first
    # Another agent never continues this conversation.
    other = await store.get_or_open(first.id, "sales", opener)
    assert other.id != first.id
    now[0] = 61
    again = await store.get_or_open(first.id, "desk", opener)
    assert again.id != first.id and chats[0].closed and chats[1].closed


async def test_the_oldest_conversation_is_closed_when_too_many_are_open():
    now = [0.0]

    async def opener(_id: str) -> FakeChat:
        return FakeChat()

    store = Conversations(idle_seconds=600, max_open=2, clock=lambda: now[0])
    a = await store.get_or_open(None, "desk", opener)
    now[0] = 1
    b = await store.get_or_open(None, "desk", opener)
    now[0] = 2
    await store.get_or_open(None, "desk", opener)
    assert len(store) == 2 and a.chat.closed and not b.chat.closed
