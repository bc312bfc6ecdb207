"""The recording announcement ("This call may be recorded."), spoken by the platform.

It is rendered by the local TTS voice, not by the agent's model: every model and
every carrier then play the same words, verbatim, before the model says anything,
and no model turn is spent on it. The μ-law audio is cached per text, so only an
agent's first call (or a changed text) pays for the synthesis, and that runs in a
worker thread.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agentplatform.audio.codecs import pcm16_to_ulaw

if TYPE_CHECKING:
    from agentplatform.carriers.base import CallAudio
    from agentplatform.recording.call import CallRecording

CACHE_SIZE = 32
MARK = "announcement"  # the mark after it; the bridge's playback tracker ignores it
# A breath between the announcement and the agent's first words.
PAUSE_SECONDS = 0.4

Render = Callable[[str], Awaitable[bytes]]


def _render_locally(text: str) -> bytes:
    """μ-law 8 kHz of ``text`` in the local voice (blocking: seconds of CPU at most)."""
    from agentplatform.audio.wav import resample_whole
    from agentplatform.speech.tts_local import synthesize_sentences, voice_rate

    pcm = b"".join(synthesize_sentences(text, steady=True))
    return pcm16_to_ulaw(resample_whole(pcm, voice_rate(), 8000))


async def render_locally(text: str) -> bytes:
    return await asyncio.to_thread(_render_locally, text)


class Announcements:
    """Rendered announcements, by text (least recently used dropped past ``CACHE_SIZE``)."""

    def __init__(self, render: Render = render_locally) -> None:
        self._render = render
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._rendering: dict[str, asyncio.Future[bytes]] = {}

    async def audio(self, text: str) -> bytes:
        """The announcement's μ-law audio; raises what the renderer raises."""
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        pending = self._rendering.get(text)
        if pending is None:  # one synthesis for calls that arrive together
            pending = asyncio.ensure_future(self._render(text))
            self._rendering[text] = pending
            pending.add_done_callback(lambda _f: self._rendering.pop(text, None))
        ulaw = await asyncio.shield(pending)
        if not ulaw:
            raise ValueError("the announcement rendered to no audio")
        self._cache[text] = ulaw
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return ulaw


async def play(audio: CallAudio, recording: CallRecording, ulaw: bytes) -> float:
    """Send the announcement to the carrier, followed by its mark, and record it;
    returns how long it plays (seconds)."""
    await audio.send_audio(ulaw)
    await audio.send_mark(MARK)
    recording.agent_sent(MARK, MARK, ulaw)
    return len(ulaw) / 8000
