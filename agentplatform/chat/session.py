"""One chat conversation with an agent: its text engine, its tools, its greeting.

Chat always uses text modality: the agent's ``TextSession`` (the same one the cascade
uses) streams the answer, and tool calls run through the same ``ToolRunner`` a phone
call uses, so a webhook tool really is called. Each ``ask`` yields what happens in
order — text pieces, each tool call with its arguments, its result — and ends with
``ChatDone`` (or ``ChatError``). Built-ins that act on a phone line (end the call,
transfer) are reported, since a chat has no line to act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from agentplatform.agents import envpolicy
from agentplatform.agents.placeholders import CallContext, render
from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.realtime.base import ResponseDone, SessionError, ToolCall
from agentplatform.text.base import TextDelta
from agentplatform.tools import EndCall, SendDtmf, ToolRunner, Transfer, tool_specs

log = logging.getLogger(__name__)

CHAT_NUMBER = "chat"
TURN_TIMEOUT_SECONDS = 120.0
MAX_TOOL_ROUNDS = 8  # a model that keeps calling tools is stopped, not looped forever


@dataclass(slots=True)
class ChatDelta:
    text: str


@dataclass(slots=True)
class ChatToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ChatToolResult:
    call_id: str
    name: str
    output: str
    ok: bool
    note: str = ""  # what the built-in would do on a phone line


@dataclass(slots=True)
class ChatDone:
    text: str  # the whole answer
    # The agent used end_call: this was its goodbye and the conversation is over, as a
    # phone call would be.
    ended: bool = False


@dataclass(slots=True)
class ChatError:
    message: str


ChatEvent = ChatDelta | ChatToolCall | ChatToolResult | ChatDone | ChatError


class Engine(Protocol):
    """What a chat needs from its model side (a ``TextSession`` fits)."""

    async def connect(self) -> None: ...
    async def send_user(self, text: str) -> None: ...
    async def send_tool_result(self, call_id: str, name: str, output: str) -> None: ...
    def add_assistant(self, text: str) -> None: ...
    def events(self) -> AsyncIterator[object]: ...
    async def close(self) -> None: ...


class ChatSession:
    """One conversation. ``ask`` calls are serialized: one answer at a time."""

    def __init__(self, agent: AgentSpec, engine: Engine, tools: ToolRunner, *,
                 slow_note: str = "") -> None:
        self.agent = agent
        self.engine = engine
        self.tools = tools
        self.slow_note = slow_note  # set when the model only speaks (chat goes through audio)
        self.greeting = ""
        self.closed = False
        self._events: AsyncIterator[object] | None = None
        self._lock = asyncio.Lock()

    async def start(self, context: CallContext) -> None:
        await self.engine.connect()
        self._events = aiter(self.engine.events())
        if self.agent.greeting:
            self.greeting = render(self.agent.greeting, context)
            self.engine.add_assistant(self.greeting)

    async def ask(self, text: str) -> AsyncIterator[ChatEvent]:
        """Send the user's ``text``; yield the answer as it streams, tools included."""
        async with self._lock:
            if self.closed or self._events is None:
                yield ChatError("this conversation has ended; start a new one")
                return
            await self.engine.send_user(text)
            answer: list[str] = []
            rounds = 0
            ending = False
            while True:
                pending: list[ToolCall] = []
                done = False
                async for event in self._next_response():
                    if isinstance(event, TextDelta):
                        answer.append(event.text)
                        yield ChatDelta(event.text)
                    elif isinstance(event, ToolCall):
                        pending.append(event)
                        yield ChatToolCall(event.call_id, event.name, event.arguments)
                    elif isinstance(event, SessionError):
                        if event.fatal:
                            self.closed = True
                        yield ChatError(event.message)
                        return
                    elif isinstance(event, ResponseDone):
                        done = True
                if not done:
                    self.closed = True
                    yield ChatError("the model ended the conversation")
                    return
                if not pending:
                    if ending:
                        await self.close()
                    yield ChatDone("".join(answer), ended=ending)
                    return
                rounds += 1
                if rounds > MAX_TOOL_ROUNDS:
                    yield ChatError(f"stopped after {MAX_TOOL_ROUNDS} rounds of tool calls")
                    return
                results = await asyncio.gather(*(self.tools.run(c.name, c.arguments)
                                                 for c in pending))
                for call, outcome in zip(pending, results, strict=True):
                    ending = ending or isinstance(outcome.action, EndCall)
                    yield ChatToolResult(call.call_id, call.name, outcome.output, outcome.ok,
                                         _action_note(outcome.action))
                    await self.engine.send_tool_result(call.call_id, call.name, outcome.output)

    async def _next_response(self) -> AsyncIterator[object]:
        """Events up to and including the next ``ResponseDone`` (or a SessionError)."""
        assert self._events is not None
        while True:
            try:
                async with asyncio.timeout(TURN_TIMEOUT_SECONDS):
                    event = await anext(self._events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield SessionError("timeout", f"no answer within {TURN_TIMEOUT_SECONDS:.0f} s")
                return
            yield event
            if isinstance(event, (ResponseDone, SessionError)):
                return

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.engine.close()


def _action_note(action: object) -> str:
    if isinstance(action, EndCall):
        return "on a phone call the agent would now hang up"
    if isinstance(action, Transfer):
        return f"on a phone call the caller would now be transferred to {action.number}"
    if isinstance(action, SendDtmf):
        return f"on a phone call the keys {action.digits} would now be pressed"
    return ""


async def open_chat(agent: AgentSpec, *, catalog: Catalog, settings: Settings,
                    http: httpx.AsyncClient, conversation_id: str) -> ChatSession:
    """A started conversation with ``agent``: text modality when the model has it, else
    through audio (slower). Raises ``PlatformError`` subclasses with a clear message."""
    from agentplatform.chat.audio_bridge import open_audio_engine, speaks_only
    from agentplatform.text.sessions import open_text_session

    context = CallContext(caller_number=CHAT_NUMBER, called_number=CHAT_NUMBER,
                          call_id=conversation_id, agent_name=agent.name,
                          timezone=agent.timezone)
    instructions = render(agent.prompt, context)
    specs = tool_specs(agent)
    if speaks_only(agent, catalog):
        engine: Engine = open_audio_engine(agent, instructions=instructions, tools=specs,
                                           catalog=catalog, settings=settings)
        note = ("This model only speaks, so chat goes through audio: your text is "
                "synthesized, sent as speech, and the spoken answer is transcribed. "
                "Answers are slower than in text.")
    else:
        engine = open_text_session(agent, instructions=instructions, tools=specs,
                                   catalog=catalog, settings=settings, http=http)
        note = ""
    chat = ChatSession(agent, engine, ToolRunner(agent, http_client=http,
                                       allowed_env=envpolicy.allowlist(settings)), slow_note=note)
    try:
        await chat.start(context)
    except BaseException:
        await chat.close()
        raise
    return chat
