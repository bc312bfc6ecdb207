"""The cascade: a ``ModelSession`` that hears with VAD + speech-to-text, thinks with a
text model, and speaks with text-to-speech.

It serves agents with ``voice_streaming: false`` and models with no voice of their
own (the offline ``local`` provider). To the bridge it is one more model session: the
same events (``SpeechStarted`` for barge-in, ``AudioDelta`` per stretch of speech,
transcripts, tool calls), the same ``truncate`` after a barge-in. So the call path,
the tools and the records are exactly those of a realtime model.

    caller PCM 16 kHz ─▶ VAD ─ start ─▶ SpeechStarted (the bridge clears the carrier)
                             ─ end ───▶ SpeechStopped, STT ─▶ user Transcript
                                         ─▶ TextSession.send_user
    TextDelta ─▶ SentenceBuffer ─ piece ─▶ TTS ─▶ AudioDelta (100 ms stretches)
    ToolCall  ─▶ passed to the bridge, whose result comes back to the text model
    truncate(item, heard_ms) ─▶ TextSession.set_heard(the words played)

Turn-taking is ours here: the detector decides when the caller is done, so its
silence duration is the first part of every answer's latency (see ``metrics.py``).
With a turn-end judge (``turn_end.py``), the transcript made during the first ~100 ms
of a pause decides how long that pause may last: short when the words are a finished
sentence, long when they are not. A caller who goes on talking after an answer has
started is a barge-in like any other: the answer is cancelled, and the next turn has
all their words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import soxr

from agentplatform.cascade.capacity import CascadeCapacity
from agentplatform.cascade.metrics import CASCADE_METRICS, CascadeMetrics, TurnTimings
from agentplatform.cascade.sentences import SentenceBuffer
from agentplatform.cascade.spoken import SpokenAnswer, SpokenPiece
from agentplatform.cascade.turn_end import TurnEndPolicy, judge
from agentplatform.errors import PlatformError
from agentplatform.realtime.base import (
    AudioDelta,
    AudioDone,
    Capabilities,
    ModelEvent,
    ModelSession,
    ResponseDone,
    SessionError,
    SessionNotice,
    SessionSetup,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    Transcript,
)
from agentplatform.speech.stt import SpeechToText, Transcription
from agentplatform.speech.tts import TextToSpeech
from agentplatform.speech.vad import SpeechEnd, SpeechPause, SpeechStart
from agentplatform.text.base import TextDelta, TextSession

log = logging.getLogger(__name__)

INPUT_RATE = 16000
# Rates the call path's streaming resamplers handle; a voice at another rate (Piper's
# 22050 Hz) is converted to SPEECH_RATE piece by piece before it leaves the cascade.
STREAMABLE_RATES = frozenset({8000, 16000, 24000, 48000})
SPEECH_RATE = 16000
CHUNK_MS = 40  # the size of each AudioDelta handed to the bridge
DIDNT_CATCH = "Sorry, I didn't catch that. Could you say it again?"
# What speech-to-text returns for noise rather than words.
_NON_SPEECH = re.compile(r"^\W*$|^[\[(][^\])]*[\])]$")


def _quiet(task: asyncio.Task[Transcription]) -> None:
    """An unused guess may fail or be cancelled; that is not worth a log line."""
    if not task.cancelled():
        task.exception()


class VoiceDetector(Protocol):
    silence_duration_ms: int

    def process(self, pcm16: bytes) -> list[SpeechStart | SpeechPause | SpeechEnd]: ...
    def end_pause_after(self, pause_at_ms: float, hangover_ms: float) -> SpeechEnd | None: ...
    def reset(self) -> None: ...


@dataclass(slots=True)
class CascadeParts:
    """The four engines of one call's cascade."""

    text: TextSession
    stt: SpeechToText
    tts: TextToSpeech
    vad: VoiceDetector
    # The turn-end judge's policy; None: every pause lasts the detector's silence.
    turn_end: TurnEndPolicy | None = None


@dataclass(slots=True)
class _Piece:
    item_id: str
    text: str


@dataclass(slots=True)
class _EndOfAnswer:
    item_id: str | None
    response_done: ResponseDone | None = None


@dataclass(slots=True)
class _Turn:
    """Clock readings of the turn being answered, for ``TurnTimings``."""

    ended_at: float  # monotonic time the detector called the turn over
    vad_hangover_ms: float
    stt_ms: float = 0.0
    asked_at: float = 0.0
    first_token_at: float | None = None
    reported: bool = False


@dataclass(slots=True)
class _Speaking:
    answers: dict[str, SpokenAnswer] = field(default_factory=dict)
    current: str | None = None  # the answer the text model is writing now


class CascadeSession(ModelSession):
    def __init__(
        self, setup: SessionSetup, parts: CascadeParts, *,
        metrics: CascadeMetrics = CASCADE_METRICS, chunk_ms: int = CHUNK_MS,
        capacity: CascadeCapacity | None = None,
    ) -> None:
        super().__init__(setup)
        self.parts = parts
        voice_rate = parts.tts.output_rate
        self._out_rate = voice_rate if voice_rate in STREAMABLE_RATES else SPEECH_RATE
        self.capabilities = Capabilities(
            input_rate=INPUT_RATE, output_rate=self._out_rate,
            truncates=True, g711=False, text_modality=True,
        )
        self._metrics = metrics
        self._chunk_bytes = max(2, self._out_rate * chunk_ms // 1000 * 2)
        self._events: asyncio.Queue[ModelEvent | None] = asyncio.Queue()
        self._pieces: asyncio.Queue[_Piece | _EndOfAnswer] = asyncio.Queue()
        self._utterances: asyncio.Queue[SpeechEnd] = asyncio.Queue()
        self._sentences = SentenceBuffer()
        self._speaking = _Speaking()
        self._turn: _Turn | None = None
        self._speech_started_ms: float = 0.0
        self._cancelled: set[str] = set()
        self._responding = False
        self._discarding = False  # a cancelled response's late events are dropped
        self._tasks: list[asyncio.Task[None]] = []
        self._speaker: asyncio.Task[None] | None = None
        # Speech-to-text started on a pause hint, during the detector's hangover.
        self._guess: tuple[bytes, asyncio.Task[Transcription]] | None = None
        self._next_pause: SpeechPause | None = None  # waiting for a stale guess to end
        self._closed = False
        # The local engines' live-call count this session is in, from connect to close.
        self._capacity = capacity
        self._counted = False

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        await self.parts.text.connect()
        if self._capacity is not None and not self._counted:
            self._capacity.opened()
            self._counted = True
        self._tasks = [
            asyncio.create_task(self._text_loop(), name="cascade-text"),
            asyncio.create_task(self._listener(), name="cascade-listen"),
        ]
        self._start_speaker()

    def _start_speaker(self) -> None:
        self._speaker = asyncio.create_task(self._speak_loop(), name="cascade-speak")

    async def events(self) -> AsyncIterator[ModelEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._counted and self._capacity is not None:
            self._capacity.closed()
            self._counted = False
        tasks = [*self._tasks, *([self._speaker] if self._speaker else []),
                 *([self._guess[1]] if self._guess else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.parts.text.close()
        self._events.put_nowait(None)

    def _emit(self, event: ModelEvent) -> None:
        if not self._closed:
            self._events.put_nowait(event)

    # ------------------------------------------------------------------ hearing

    async def send_audio(self, audio: bytes) -> None:
        for edge in self.parts.vad.process(audio):
            if isinstance(edge, SpeechStart):
                self._speech_started_ms = edge.at_ms
                self._emit(SpeechStarted())
            elif isinstance(edge, SpeechPause):
                self._transcribe_early(edge)
            else:
                self._end_turn(edge)

    def _end_turn(self, edge: SpeechEnd) -> None:
        voiced_end_ms = self._speech_started_ms + edge.speech_ms
        self._emit(SpeechStopped(waited_ms=max(0.0, edge.at_ms - voiced_end_ms)))
        self._utterances.put_nowait(edge)

    def _transcribe_early(self, pause: SpeechPause) -> None:
        """Start transcribing while the detector waits out its silence: if the caller
        stays quiet, the turn's text is ready (or nearly) when the turn ends, so the
        hangover and the transcription overlap instead of adding up. With a judge, the
        text also sets how long this pause may last."""
        if self._guess is not None and not self._guess[1].done():
            # One at a time: a stale guess must not delay the real turn further. With a
            # judge, the latest pause still needs its words: it goes next.
            self._next_pause = pause
            return
        task = asyncio.create_task(self.parts.stt.transcribe(pause.audio, INPUT_RATE))
        task.add_done_callback(_quiet)
        task.add_done_callback(lambda done: self._judge_pause(pause, done))
        self._guess = (pause.audio, task)

    def _judge_pause(self, pause: SpeechPause, done: asyncio.Task[Transcription]) -> None:
        """The pause's transcript is in: give the pause the hangover its words earn (the
        detector ignores a pause that is already over); then a pause that waited."""
        policy = self.parts.turn_end
        if self._closed or policy is None or done.cancelled():
            return
        if done.exception() is None:
            verdict = judge(done.result().text)
            log.debug("cascade: pause at %.0f ms heard %r: %s", pause.at_ms,
                      done.result().text, verdict.value)
            limit = policy.hangover_ms(verdict)
            edge = self.parts.vad.end_pause_after(pause.at_ms, limit)
            if edge is not None:
                self._end_turn(edge)
        waiting, self._next_pause = self._next_pause, None
        if waiting is not None and waiting is not pause:
            self._transcribe_early(waiting)

    async def _transcription(self, audio: bytes) -> Transcription:
        guess, self._guess = self._guess, None
        if guess is not None and guess[0] == audio:
            return await guess[1]
        return await self.parts.stt.transcribe(audio, INPUT_RATE)

    async def _listener(self) -> None:
        """Transcribe each finished utterance, in order, and hand it to the text model."""
        while True:
            utterance = await self._utterances.get()
            ended_at = time.monotonic()
            voiced_end_ms = self._speech_started_ms + utterance.speech_ms
            turn = _Turn(ended_at=ended_at,
                         vad_hangover_ms=max(0.0, utterance.at_ms - voiced_end_ms))
            try:
                result = await self._transcription(utterance.audio)
            except PlatformError as exc:
                log.warning("cascade: speech-to-text failed: %s", exc)
                self._emit(SessionError("stt_failed", str(exc), fatal=False))
                await self._say_directly(DIDNT_CATCH)
                continue
            text = result.text.strip()
            turn.stt_ms = (time.monotonic() - ended_at) * 1000.0
            self._emit(SessionNotice("stt", {"audio_seconds": round(result.audio_seconds, 3),
                                             "model": result.model, "ms": round(turn.stt_ms)}))
            if _NON_SPEECH.match(text):
                continue
            user_item = f"user_{uuid.uuid4().hex[:12]}"
            self._emit(Transcript("user", text, True, user_item))
            turn.asked_at = time.monotonic()
            self._turn = turn
            await self._ask(self.parts.text.send_user(text))

    async def _ask(self, request) -> None:  # noqa: ANN001 - a TextSession coroutine
        self._discarding = False
        self._responding = True
        await request

    # ------------------------------------------------------------------ thinking

    async def _text_loop(self) -> None:
        async for event in self.parts.text.events():
            if isinstance(event, TextDelta):
                if not self._discarding:
                    self._on_delta(event.text)
            elif isinstance(event, ToolCall):
                if not self._discarding:
                    self._end_answer(None)
                    self._emit(event)
            elif isinstance(event, ResponseDone):
                self._responding = False
                if self._discarding:
                    self._discarding = False
                    self._emit(event)
                else:
                    self._end_answer(event)
            elif isinstance(event, SessionError):
                self._emit(event)
        self._emit(SessionError("text_session_ended", "the text model's session ended",
                                fatal=True))

    def _on_delta(self, text: str) -> None:
        if self._speaking.current is None:
            item_id = f"item_{uuid.uuid4().hex[:12]}"
            self._speaking.current = item_id
            self._speaking.answers[item_id] = SpokenAnswer(item_id)
            if self._turn is not None and self._turn.first_token_at is None:
                self._turn.first_token_at = time.monotonic()
        for piece in self._sentences.feed(text):
            self._pieces.put_nowait(_Piece(self._speaking.current, piece))

    def _end_answer(self, done: ResponseDone | None) -> None:
        item_id = self._speaking.current
        rest = self._sentences.flush()
        if item_id is not None and rest:
            self._pieces.put_nowait(_Piece(item_id, rest))
        self._speaking.current = None
        self._pieces.put_nowait(_EndOfAnswer(item_id, done))

    # ------------------------------------------------------------------ speaking

    async def _speak_loop(self) -> None:
        while True:
            entry = await self._pieces.get()
            if isinstance(entry, _EndOfAnswer):
                self._finish_answer(entry)
                continue
            if entry.item_id in self._cancelled:
                continue
            answer = self._speaking.answers[entry.item_id]
            spoken = SpokenPiece(entry.text)
            answer.pieces.append(spoken)
            try:
                await self._synthesize(entry.item_id, spoken)
            except PlatformError as exc:
                log.error("cascade: text-to-speech failed: %s", exc)
                self._emit(SessionError("tts_failed", str(exc), fatal=True))
                return

    async def _synthesize(self, item_id: str, spoken: SpokenPiece) -> None:
        started = time.monotonic()
        held = b""
        async for pcm in self.parts.tts.synthesize(spoken.text):
            held += self._to_speech_rate(pcm)
            while len(held) >= self._chunk_bytes:
                chunk, held = held[: self._chunk_bytes], held[self._chunk_bytes:]
                self._send_audio(item_id, spoken, chunk, started)
        if held:
            self._send_audio(item_id, spoken, held[: len(held) // 2 * 2], started)

    def _to_speech_rate(self, pcm: bytes) -> bytes:
        """A voice chunk at the rate the bridge streams; whole chunks, so no state."""
        rate = self.parts.tts.output_rate
        if rate == self._out_rate or not pcm:
            return pcm
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        return soxr.resample(samples, rate, self._out_rate, quality="HQ").astype("<i2").tobytes()

    def _send_audio(self, item_id: str, spoken: SpokenPiece, chunk: bytes, started: float) -> None:
        now = time.monotonic()
        spoken.audio_ms += len(chunk) / 2 / self._out_rate * 1000.0
        self._report_turn(started, now)
        self._emit(AudioDelta(item_id, chunk, received_at=now))

    def _report_turn(self, synth_started: float, now: float) -> None:
        turn = self._turn
        if turn is None or turn.reported:
            return
        turn.reported = True
        first_token = turn.first_token_at or synth_started
        timings = TurnTimings(
            vad_hangover_ms=turn.vad_hangover_ms, stt_ms=turn.stt_ms,
            llm_first_token_ms=max(0.0, (first_token - turn.asked_at) * 1000.0),
            tts_first_audio_ms=max(0.0, (now - max(first_token, synth_started)) * 1000.0),
        )
        # Time queued behind an earlier piece counts too: measure end to end, then
        # attribute what the parts do not explain to the synthesis step.
        caller_felt = turn.vad_hangover_ms + (now - turn.ended_at) * 1000.0
        timings.tts_first_audio_ms += max(0.0, caller_felt - timings.turn_ms)
        self._metrics.add(timings)
        self._emit(SessionNotice("cascade_turn", timings.as_dict()))

    def _finish_answer(self, end: _EndOfAnswer) -> None:
        answer = self._speaking.answers.get(end.item_id or "")
        if answer is not None and end.item_id not in self._cancelled and answer.pieces:
            self._emit(AudioDone(answer.item_id))
            self._emit(Transcript("assistant", answer.text, True, answer.item_id))
        if end.response_done is not None:
            self._emit(end.response_done)

    async def _say_directly(self, text: str) -> None:
        """Speak a fixed line with no model involved (a failed transcription)."""
        item_id = f"item_{uuid.uuid4().hex[:12]}"
        self._speaking.answers[item_id] = SpokenAnswer(item_id)
        self.parts.text.add_assistant(text)
        self._pieces.put_nowait(_Piece(item_id, text))
        self._pieces.put_nowait(_EndOfAnswer(item_id, None))

    # ------------------------------------------------------------------ the bridge's requests

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        self._turn = None
        await self._ask(self.parts.text.send_user(text))

    async def request_response(self, instructions: str | None = None) -> None:
        self._turn = None
        await self._ask(self.parts.text.respond(instructions))

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self._responding = True
        await self.parts.text.send_tool_result(call_id, name, output)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        answer = self._speaking.answers.get(item_id)
        if answer is None:
            return
        heard = answer.heard_text(audio_end_ms)
        await self.parts.text.set_heard(heard)
        self._emit(SessionNotice("truncated", {"item_id": item_id, "heard_ms": audio_end_ms,
                                               "heard_text": heard}))

    async def cancel_response(self) -> None:
        """Barge-in: stop writing and speaking; keep the words already spoken on record."""
        interrupted = [self._speaking.current] if self._speaking.current else []
        while not self._pieces.empty():
            entry = self._pieces.get_nowait()
            if isinstance(entry, _Piece):
                interrupted.append(entry.item_id)
            elif entry.item_id:
                interrupted.append(entry.item_id)
        if self._speaker is not None and not self._speaker.done():
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker
        for item_id in dict.fromkeys(interrupted):
            answer = self._speaking.answers.get(item_id)
            if answer is not None and answer.pieces and item_id not in self._cancelled:
                self._emit(AudioDone(item_id))
                self._emit(Transcript("assistant", answer.text, True, item_id))
            self._cancelled.add(item_id)
        self._speaking.current = None
        self._sentences.flush()
        self._turn = None
        self._start_speaker()
        if self._responding:
            self._discarding = True
            await self.parts.text.cancel()
