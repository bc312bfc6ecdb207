"""Chat with a model that only speaks (Gemini Live, Nova Sonic): through audio.

Such models cannot answer in text, so a chat turn goes the way a phone turn does: the
user's text is synthesized (the local Piper voice, so no extra key is needed), sent to
the realtime session as speech followed by silence so the model's own turn detection
ends the turn, and the spoken answer comes back as the model's transcript. Slower than
text, and the chat panel says so. The answer's audio itself is dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from agentplatform.agents.spec import AgentSpec
from agentplatform.audio.frames import silence
from agentplatform.audio.wav import resample_whole
from agentplatform.catalog import Catalog
from agentplatform.config import Settings
from agentplatform.errors import CatalogError
from agentplatform.realtime.base import (
    ModelSession, ResponseDone, SessionError, ToolCall, ToolSpec, Transcript,
)
from agentplatform.realtime.sessions import build_setup, open_session
from agentplatform.speech.tts import TextToSpeech, build_tts
from agentplatform.text.base import TextDelta

VOICE_SERVICE = "local"  # Piper: offline, in the install
CHUNK_MS = 40
TRAILING_SILENCE_MS = 1200  # longer than any agent's silence_duration_ms default
SIBLING_TURNS = 3  # loop turns given for the other calls of one tool-call message
_END = object()


def speaks_only(agent: AgentSpec, catalog: Catalog) -> bool:
    """True when the agent's model cannot answer in text and no text endpoint is set."""
    if agent.cascade.llm is not None:
        return False
    try:
        model = catalog.model(agent.model)
    except CatalogError:
        return False
    return model.provider.speech and not model.text_modality


class SpokenChatEngine:
    """A ``TextSession``-shaped engine over a realtime speech session."""

    def __init__(self, session: ModelSession, tts: TextToSpeech) -> None:
        self.session = session
        self.tts = tts
        self._streamed: dict[str, str] = {}  # item id -> assistant text already given
        self._send_lock = asyncio.Lock()
        self._results_due = 0  # tool calls whose results the model still waits for

    async def connect(self) -> None:
        await self.session.connect()

    async def send_user(self, text: str) -> None:
        rate = self.session.capabilities.input_rate
        chunk = rate * 2 * CHUNK_MS // 1000
        async with self._send_lock:
            async for pcm in self.tts.synthesize(text):  # whole sentences: resample each
                speech = resample_whole(pcm, self.tts.output_rate, rate)
                for start in range(0, len(speech), chunk):
                    await self.session.send_audio(speech[start:start + chunk])
                    # Paced near real time: realtime turn detection runs on an audio clock.
                    await asyncio.sleep(CHUNK_MS / 1000 / 4)
            quiet = silence(CHUNK_MS, rate)
            for _ in range(TRAILING_SILENCE_MS // CHUNK_MS):
                await self.session.send_audio(quiet)
                await asyncio.sleep(CHUNK_MS / 1000 / 4)

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self._results_due = max(0, self._results_due - 1)
        await self.session.send_tool_result(call_id, name, output)

    def add_assistant(self, text: str) -> None:
        """A fixed greeting is shown in the panel; a speech session has no history to
        add it to before the first turn, so the model does not see it."""

    async def events(self) -> AsyncIterator[object]:
        """The session's events in the ``TextSession`` shape: the answer's transcript as
        text, and tool calls closed by a ``ResponseDone``.

        Speech models pause after a tool call until its result arrives and only then end
        the turn, while chat (like the text engines) expects a response to end at its
        tool calls. So the calls of one model message are passed on followed by a
        ``ResponseDone``, and a done that arrives while results are still due is dropped.
        """
        inbox: asyncio.Queue[object] = asyncio.Queue()
        held: deque[object] = deque()

        async def pump() -> None:
            try:
                async for event in self.session.events():
                    inbox.put_nowait(event)
            finally:
                inbox.put_nowait(_END)

        task = asyncio.create_task(pump())
        try:
            while True:
                event = held.popleft() if held else await inbox.get()
                if event is _END:
                    return
                if isinstance(event, Transcript) and event.role == "assistant":
                    delta = self._delta(event)
                    if delta:
                        yield TextDelta(delta)
                elif isinstance(event, ToolCall):
                    self._results_due += 1
                    yield event
                    # Sibling calls of the same message are already on their way.
                    for _ in range(SIBLING_TURNS):
                        await asyncio.sleep(0)
                    while not inbox.empty():
                        held.append(inbox.get_nowait())
                    if not (held and isinstance(held[0], ToolCall)):
                        yield ResponseDone(status="tool_calls")
                elif isinstance(event, ResponseDone):
                    if self._results_due == 0:
                        yield event
                elif isinstance(event, SessionError):
                    yield event
        finally:
            task.cancel()

    def _delta(self, event: Transcript) -> str:
        given = self._streamed.get(event.item_id, "")
        if not event.final:
            self._streamed[event.item_id] = given + event.text
            return event.text
        if not given:  # providers that only send the whole line at the end
            self._streamed[event.item_id] = event.text
            return event.text
        return ""

    async def close(self) -> None:
        await self.session.close()


def open_audio_engine(agent: AgentSpec, *, instructions: str, tools: list[ToolSpec],
                      catalog: Catalog, settings: Settings) -> SpokenChatEngine:
    model = catalog.model(agent.model)
    setup = build_setup(agent, model, settings, instructions=instructions, tools=tools,
                        output_modality="audio")
    tts = build_tts(VOICE_SERVICE, None, None, catalog=catalog, settings=settings, http=None)  # type: ignore[arg-type]
    return SpokenChatEngine(open_session(model, setup), tts)
