"""The local Piper voice behind the TextToSpeech seam."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agentplatform.audio.frames import rms_dbfs
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.speech import tts_local
from agentplatform.speech.tts import build_tts


@pytest.fixture(scope="module", autouse=True)
def _voice_loaded():
    tts_local.preload()


def local_tts():
    return build_tts("local", None, None, catalog=load_catalog(),
                     settings=Settings(_env_file=None), http=httpx.AsyncClient())


async def test_speaks_pcm_at_the_voice_rate_for_a_plausible_time():
    tts = local_tts()
    assert tts.output_rate == 22050
    chunks = [c async for c in tts.synthesize("Hello. Your table for two is booked at seven.")]
    assert len(chunks) == 2  # one chunk per sentence, the first ready before the second
    assert all(len(c) % 2 == 0 for c in chunks)
    seconds = sum(len(c) for c in chunks) / 2 / tts.output_rate
    assert 1.5 < seconds < 6.0  # ten words at a speaking pace
    assert rms_dbfs(b"".join(chunks)) > -35.0  # a voice, not silence


async def test_closing_early_stops_the_remaining_sentences():
    sentences = [f"This is sentence number {n} of a long answer." for n in range(12)]
    tts = local_tts()
    stream = tts.synthesize(" ".join(sentences))
    first = await anext(stream)
    assert first
    await stream.aclose()
    # The worker skips every sentence after the flag: the TTS thread frees up at once,
    # so a new job gets through while most of the twelve were never rendered.
    done = asyncio.get_running_loop().run_in_executor(tts_local.tts_executor(), lambda: "free")
    assert await asyncio.wait_for(done, timeout=5.0) == "free"
    rendered = [c async for c in tts.synthesize(sentences[0])]
    assert len(rendered) == 1


async def test_cancelling_the_consumer_task_stops_synthesis():
    tts = local_tts()
    got: list[bytes] = []

    async def consume() -> None:
        async for chunk in tts.synthesize(" ".join(["Counting sheep again and again."] * 20)):
            got.append(chunk)
            await asyncio.sleep(10)  # stuck playing the first sentence until cancelled

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(got) == 1


async def test_blank_text_speaks_nothing():
    assert [c async for c in local_tts().synthesize("  ")] == []


async def test_a_remembered_line_is_spoken_without_rendering_it_again(monkeypatch):
    line = "We're open Monday to Friday,"
    tts_local.remember([line])
    first = tts_local.PHRASES.get(line)
    assert first and all(first)

    def no_render(*_a, **_k):
        raise AssertionError("rendered again")

    monkeypatch.setattr(tts_local, "synthesize_sentences", no_render)
    chunks = [c async for c in local_tts().synthesize(line)]
    assert tuple(chunks) == first


def test_the_phrase_cache_keeps_the_most_recent_short_pieces_only():
    cache = tts_local.PhraseCache(size=2)
    cache.put("one", (b"\x01\x00",))
    cache.put("two", (b"\x02\x00",))
    assert cache.get("one")  # now the most recently used
    cache.put("three", (b"\x03\x00",))
    assert cache.get("two") is None and cache.get("one") and cache.get("three")
    cache.put("x" * (tts_local.CACHED_CHARS + 1), (b"\x04\x00",))
    assert cache.get("x" * (tts_local.CACHED_CHARS + 1)) is None
