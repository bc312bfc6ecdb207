"""The recording announcement: heard before anything else, or no recording at all."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from agentplatform.agents.spec import Recording
from agentplatform.bridge.call import CallSession
from agentplatform.carriers.base import CallAudio, CallInfo, CarrierEvent, InboundAudio, MarkPlayed
from agentplatform.recording import announce
from agentplatform.recording.announce import Announcements
from agentplatform.recording.writer import RecordingWriter
from agentplatform.records import EndReason
from agentplatform.testing import fuzz_carriers

ANNOUNCEMENT = bytes([0x40]) * 800  # 100 ms


class Line(CallAudio):
    """A caller that stays silent for a second, echoing marks at once, then hangs up."""

    def __init__(self) -> None:
        self.info = CallInfo(call_id="line-1", stream_id="s-1", agent=fuzz_carriers.AGENT,
                             carrier="test")
        self.sent: list[bytes | str] = []
        self._marks: asyncio.Queue[str] = asyncio.Queue()

    async def events(self) -> AsyncIterator[CarrierEvent]:
        for n in range(50):
            yield InboundAudio(bytes([0xFF]) * 160, n * 20)
            while not self._marks.empty():
                yield MarkPlayed(self._marks.get_nowait())
            await asyncio.sleep(0.02)

    async def send_audio(self, ulaw: bytes) -> None:
        self.sent.append(ulaw)

    async def send_mark(self, name: str) -> None:
        self.sent.append(name)
        self._marks.put_nowait(name)

    async def clear(self) -> None: ...
    async def hang_up(self, say: str | None = None) -> None: ...
    async def transfer(self, number: str) -> None: ...
    async def close(self) -> None: ...


def _agent(text: str):
    return fuzz_carriers.AGENT_SPEC.model_copy(
        update={"recording": Recording(enabled=True, announce=text)})


async def _call(tmp_path, render):
    """One call of an agent that announces its recording; the line, records, session."""
    writer = RecordingWriter(tmp_path, announcements=Announcements(render))
    writer.start()
    recorder = fuzz_carriers._Recorder()
    deps = dataclasses.replace(fuzz_carriers._deps(recorder, []), recordings=writer)
    line = Line()
    session = CallSession(line, _agent("This call may be recorded."), deps)
    assert await asyncio.wait_for(session.run(), 10) is EndReason.CALLER_HUNG_UP
    writer.close()
    return line, recorder, session, writer


async def test_the_announcement_is_the_first_thing_sent_and_it_is_recorded(tmp_path):
    async def render(text: str) -> bytes:
        return ANNOUNCEMENT

    line, recorder, session, writer = await _call(tmp_path, render)
    assert line.sent[:2] == [ANNOUNCEMENT, announce.MARK]
    assert (tmp_path / f"{session.call_id}.wav").exists()
    assert "recording" in [kind for kind, _ in recorder.events]


async def test_an_announcement_that_cannot_be_made_means_the_call_is_not_recorded(tmp_path):
    async def render(text: str) -> bytes:
        raise RuntimeError("no voice installed")

    line, recorder, session, writer = await _call(tmp_path, render)
    assert ANNOUNCEMENT not in line.sent
    assert not (tmp_path / f"{session.call_id}.wav").exists()
    [(kind, detail)] = [(k, d) for k, d in recorder.events if k.startswith("recording")]
    assert kind == "recording_off" and "no voice installed" in detail["reason"]


async def test_calls_that_arrive_together_share_one_synthesis():
    renders: list[str] = []

    async def render(text: str) -> bytes:
        renders.append(text)
        await asyncio.sleep(0.05)
        return ANNOUNCEMENT

    cache = Announcements(render)
    results = await asyncio.gather(*(cache.audio("Recorded.") for _ in range(5)))
    assert results == [ANNOUNCEMENT] * 5 and renders == ["Recorded."]
    assert await cache.audio("Recorded.") == ANNOUNCEMENT and renders == ["Recorded."]
