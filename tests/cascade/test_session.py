"""The cascade session with scripted engines: what the bridge sees, event by event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from agentplatform.cascade.metrics import CascadeMetrics
from agentplatform.cascade.session import DIDNT_CATCH, CascadeParts, CascadeSession
from agentplatform.cascade.turn_end import HANGOVERS, TurnEndPolicy
from agentplatform.errors import ModelError
from agentplatform.realtime.base import (
    AudioDelta,
    AudioDone,
    ModelEvent,
    ResponseDone,
    SessionError,
    SessionNotice,
    SessionSetup,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    Transcript,
)
from agentplatform.speech.stt import Transcription
from agentplatform.speech.vad import SpeechEnd, SpeechPause, SpeechStart
from agentplatform.text.base import TextDelta, TextSession

RATE = 16000
WORD_MS = 200  # the fake voice speaks every word for 200 ms


UTTERANCE = b"\x01\x00" * RATE


class ScriptedVad:
    """``b"start"`` begins speech at 1 s; ``b"end"`` ends it after 1.2 s of speech;
    ``b"pause"`` hints that the utterance so far is the turn, ``b"false-pause"`` hints
    at audio the turn will not end with (the caller spoke again)."""

    def process(self, pcm16: bytes) -> list[SpeechStart | SpeechPause | SpeechEnd]:
        if pcm16 == b"start":
            return [SpeechStart(at_ms=1000.0)]
        if pcm16 == b"pause":
            return [SpeechPause(audio=UTTERANCE, at_ms=2400.0)]
        if pcm16 == b"false-pause":
            return [SpeechPause(audio=UTTERANCE[:1000], at_ms=1800.0)]
        if pcm16 == b"end":
            return [SpeechEnd(audio=UTTERANCE, speech_ms=1200.0, at_ms=2600.0)]
        return []

    def reset(self) -> None: ...


class ScriptedStt:
    def __init__(self, text: str = "what are your hours", fail: bool = False) -> None:
        self.text, self.fail, self.heard = text, fail, []

    async def transcribe(self, pcm16: bytes, rate: int) -> Transcription:
        self.heard.append((len(pcm16), rate))
        if self.fail:
            raise ModelError("transcription service answered 500")
        return Transcription(self.text, len(pcm16) / 2 / rate, "fake-stt")


class WordVoice:
    output_rate = RATE

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.spoken = fail, []

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if self.fail:
            raise ModelError("voice service unreachable")
        self.spoken.append(text)
        for _ in text.split():
            await asyncio.sleep(0.001)
            yield b"\x00\x01" * (RATE * WORD_MS // 1000)


class ScriptedText(TextSession):
    """Answers every user turn with ``answer``; a ``tool`` is called first when given."""

    def __init__(self, answer: str, tool: tuple[str, dict] | None = None,
                 after_tool: str = "") -> None:
        super().__init__()
        self.answer, self.tool, self.after_tool = answer, tool, after_tool
        self.heard: list[str] = []
        self.cancelled = 0
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None: ...

    async def _stream(self, text: str, then_tool: bool) -> None:
        try:
            for word in text.split(" "):
                self._emit(TextDelta(word + " "))
                await asyncio.sleep(0.001)
            if then_tool and self.tool:
                self._emit(ToolCall("call_1", self.tool[0], json.dumps(self.tool[1])))
            self._emit(ResponseDone())
        except asyncio.CancelledError:
            self._emit(ResponseDone(status="cancelled"))

    async def send_user(self, text: str) -> None:
        self.history.append({"role": "user", "content": text})
        self._task = asyncio.create_task(self._stream(self.answer, then_tool=True))

    async def respond(self, instructions: str | None = None) -> None:
        self._task = asyncio.create_task(self._stream("Hello there.", then_tool=False))

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        self._task = asyncio.create_task(self._stream(self.after_tool, then_tool=False))

    async def cancel(self) -> None:
        self.cancelled += 1
        if self._task and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def set_heard(self, text: str) -> None:
        self.heard.append(text)

    async def close(self) -> None:
        self._end_events()


def _session(text: TextSession, stt: ScriptedStt | None = None,
             voice: WordVoice | None = None) -> CascadeSession:
    parts = CascadeParts(text=text, stt=stt or ScriptedStt(), tts=voice or WordVoice(),
                         vad=ScriptedVad())
    return CascadeSession(SessionSetup(model="m", instructions="i"), parts,
                          metrics=CascadeMetrics(), chunk_ms=100)


async def _collect(session: CascadeSession, until, timeout: float = 5.0) -> list[ModelEvent]:
    seen: list[ModelEvent] = []

    async def run() -> None:
        async for event in session.events():
            seen.append(event)
            if until(event, seen):
                return

    await asyncio.wait_for(run(), timeout)
    return seen


def _responses_done(count: int):
    return lambda event, seen: sum(isinstance(e, ResponseDone) for e in seen) >= count


async def _speak(session: CascadeSession) -> None:
    await session.send_audio(b"start")
    await session.send_audio(b"quiet")
    await session.send_audio(b"end")


async def test_a_spoken_question_is_transcribed_answered_and_spoken_back() -> None:
    stt = ScriptedStt("What are your hours?")
    session = _session(ScriptedText("We are open nine to five. See you soon."), stt=stt)
    await session.connect()
    await _speak(session)
    events = await _collect(session, _responses_done(1))
    await session.close()

    kinds = [type(e) for e in events]
    assert kinds[:3] == [SpeechStarted, SpeechStopped, SessionNotice]
    assert stt.heard == [(2 * RATE, RATE)]
    user = [e for e in events if isinstance(e, Transcript) and e.role == "user"]
    assert [u.text for u in user] == ["What are your hours?"]
    audio = [e for e in events if isinstance(e, AudioDelta)]
    assert len({a.item_id for a in audio}) == 1
    # 9 words at 200 ms each, handed over in 100 ms stretches.
    assert sum(len(a.audio) for a in audio) == 9 * WORD_MS * RATE // 1000 * 2
    assert {len(a.audio) for a in audio} == {RATE // 10 * 2}
    said = [e for e in events if isinstance(e, Transcript) and e.role == "assistant"]
    assert [s.text for s in said] == ["We are open nine to five. See you soon."]
    assert kinds.index(AudioDone) < kinds.index(ResponseDone)
    assert session.parts.tts.spoken == ["We are open nine to five.", "See you soon."]


async def test_each_turn_reports_where_its_latency_went() -> None:
    metrics = CascadeMetrics()
    session = _session(ScriptedText("Yes."))
    session._metrics = metrics
    await session.connect()
    await _speak(session)
    events = await _collect(session, _responses_done(1))
    await session.close()
    notice = next(e for e in events if isinstance(e, SessionNotice) and e.kind == "cascade_turn")
    # The detector ended the turn at 2.6 s for speech from 1.0 s lasting 1.2 s.
    assert notice.detail["vad_hangover_ms"] == pytest.approx(400.0)
    parts = ("vad_hangover_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms")
    assert notice.detail["turn_ms"] == pytest.approx(sum(notice.detail[p] for p in parts), abs=0.5)
    assert metrics.turn_ms.count == 1


async def test_a_tool_call_goes_to_the_bridge_and_its_result_continues_the_answer() -> None:
    text = ScriptedText("Let me check.", tool=("check_availability", {"date": "2026-11-23"}),
                        after_tool="Tuesday at ten is free.")
    session = _session(text)
    await session.connect()
    await _speak(session)
    first = await _collect(session, lambda e, seen: isinstance(e, ToolCall))
    call = first[-1]
    assert (call.name, json.loads(call.arguments)) == ("check_availability", {"date": "2026-11-23"})
    await session.send_tool_result(call.call_id, call.name, '{"free": ["10:00"]}')
    rest = await _collect(session, _responses_done(2))
    await session.close()
    said = [e.text for e in first + rest if isinstance(e, Transcript) and e.role == "assistant"]
    assert said == ["Let me check.", "Tuesday at ten is free."]
    items = [e.item_id for e in first + rest if isinstance(e, AudioDelta)]
    assert len(set(items)) == 2


async def test_barge_in_stops_the_voice_and_keeps_only_what_was_heard() -> None:
    long_answer = " ".join(f"word{i}." for i in range(40))
    text = ScriptedText(long_answer)
    session = _session(text)
    await session.connect()
    await _speak(session)
    events = await _collect(session, lambda e, seen: sum(isinstance(x, AudioDelta) for x in seen) >= 6)
    item_id = events[-1].item_id
    await session.truncate(item_id, 400)  # two words were played
    await session.cancel_response()
    assert text.heard == ["word0. word1."]
    assert text.cancelled == 1
    await session.send_audio(b"start")
    tail = await _collect(session, lambda e, seen: isinstance(e, SpeechStarted))
    await session.close()
    late_audio = [e for e in tail if isinstance(e, AudioDelta) and e.item_id == item_id]
    # At most the stretch already handed over when the cancel landed.
    assert len(late_audio) <= 2
    said = [e for e in tail if isinstance(e, Transcript) and e.role == "assistant"]
    assert said and said[0].item_id == item_id and said[0].text.startswith("word0.")
    assert not any(isinstance(e, ResponseDone) and e.status == "completed" for e in tail)


async def test_noise_that_transcribes_to_nothing_gets_no_answer() -> None:
    text = ScriptedText("Should not be said.")
    session = _session(text, stt=ScriptedStt("[BLANK_AUDIO]"))
    await session.connect()
    await _speak(session)
    await session.send_audio(b"start")
    events = await _collect(session, lambda e, seen: sum(isinstance(x, SpeechStarted) for x in seen) == 2)
    await asyncio.sleep(0.05)
    await session.close()
    assert not [e for e in events if isinstance(e, Transcript)]
    assert text.history == []


async def test_a_failed_transcription_is_apologised_for_not_fatal() -> None:
    voice = WordVoice()
    session = _session(ScriptedText("unused"), stt=ScriptedStt(fail=True), voice=voice)
    await session.connect()
    await _speak(session)
    events = await _collect(session, lambda e, seen: isinstance(e, Transcript))
    await session.close()
    errors = [e for e in events if isinstance(e, SessionError)]
    assert [(e.code, e.fatal) for e in errors] == [("stt_failed", False)]
    assert " ".join(voice.spoken) == DIDNT_CATCH
    assert events[-1].text == DIDNT_CATCH


async def test_a_voice_that_fails_ends_the_call_with_a_fatal_error() -> None:
    session = _session(ScriptedText("Hello."), voice=WordVoice(fail=True))
    await session.connect()
    await _speak(session)
    events = await _collect(session, lambda e, seen: isinstance(e, SessionError))
    await session.close()
    assert (events[-1].code, events[-1].fatal) == ("tts_failed", True)


async def test_the_greeting_is_spoken_before_any_caller_speech() -> None:
    session = _session(ScriptedText("unused"))
    await session.connect()
    await session.request_response('Greet the caller now. Say exactly: "Hello there."')
    events = await _collect(session, _responses_done(1))
    await session.close()
    assert [e.text for e in events if isinstance(e, Transcript)] == ["Hello there."]
    assert not [e for e in events if isinstance(e, SessionNotice) and e.kind == "cascade_turn"]


class PiperRateVoice(WordVoice):
    output_rate = 22050

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.spoken.append(text)
        yield b"\x00\x01" * 22050  # one second


async def test_a_voice_at_an_unstreamable_rate_reaches_the_bridge_at_16k() -> None:
    session = _session(ScriptedText("Hi."), voice=PiperRateVoice())
    assert session.capabilities.output_rate == 16000
    await session.connect()
    await _speak(session)
    events = await _collect(session, _responses_done(1))
    await session.close()
    total = sum(len(e.audio) for e in events if isinstance(e, AudioDelta))
    assert abs(total - 2 * 16000) <= 4  # one second at 16 kHz


async def test_a_pause_hint_starts_the_transcription_the_turn_then_uses() -> None:
    stt = ScriptedStt("What are your hours?")
    session = _session(ScriptedText("Nine to five."), stt=stt)
    await session.connect()
    await session.send_audio(b"start")
    await session.send_audio(b"pause")
    await asyncio.sleep(0.01)
    assert len(stt.heard) == 1  # transcribing already, before the turn has ended
    await session.send_audio(b"end")
    events = await _collect(session, _responses_done(1))
    await session.close()
    assert len(stt.heard) == 1
    assert [e.text for e in events if isinstance(e, Transcript)] == [
        "What are your hours?", "Nine to five."]


async def test_a_hint_the_caller_spoke_past_is_not_used() -> None:
    stt = ScriptedStt("What are your hours?")
    session = _session(ScriptedText("Nine to five."), stt=stt)
    await session.connect()
    await session.send_audio(b"start")
    await session.send_audio(b"false-pause")
    await asyncio.sleep(0.01)
    await session.send_audio(b"end")
    await _collect(session, _responses_done(1))
    await session.close()
    assert [n for n, _ in stt.heard] == [1000, len(UTTERANCE)]


class JudgingVad(ScriptedVad):
    """A detector whose pause at 2.4 s has lasted ``quiet_ms`` when a verdict comes in,
    and which has no end of its own: only a verdict can end the turn."""

    def __init__(self, quiet_ms: float = 250.0) -> None:
        self.quiet_ms = quiet_ms
        self.silence_duration_ms = 400
        self.limits: list[float] = []

    def process(self, pcm16: bytes) -> list[SpeechStart | SpeechPause | SpeechEnd]:
        return [] if pcm16 == b"end" else super().process(pcm16)

    def end_pause_after(self, pause_at_ms: float, hangover_ms: float) -> SpeechEnd | None:
        self.limits.append(hangover_ms)
        if pause_at_ms == 2400.0 and self.quiet_ms >= hangover_ms:
            return SpeechEnd(audio=UTTERANCE, speech_ms=1200.0, at_ms=2400.0 + self.quiet_ms)
        return None


def _judged_session(stt: ScriptedStt, vad: JudgingVad) -> CascadeSession:
    parts = CascadeParts(text=ScriptedText("Nine to five."), stt=stt, tts=WordVoice(),
                         vad=vad, turn_end=TurnEndPolicy(HANGOVERS["auto"], 400))
    return CascadeSession(SessionSetup(model="m", instructions="i"), parts,
                          metrics=CascadeMetrics(), chunk_ms=100)


async def test_a_finished_sentence_heard_in_a_pause_ends_the_turn_after_a_short_hangover() -> None:
    vad = JudgingVad(quiet_ms=250.0)
    session = _judged_session(ScriptedStt("What are your hours?"), vad)
    await session.connect()
    await session.send_audio(b"start")
    await session.send_audio(b"pause")
    events = await _collect(session, _responses_done(1))
    await session.close()
    assert vad.limits == [HANGOVERS["auto"].complete_ms]
    assert [e.text for e in events if isinstance(e, Transcript)] == [
        "What are your hours?", "Nine to five."]


async def test_a_phrase_cut_off_in_a_pause_is_not_answered_in_that_pause() -> None:
    vad = JudgingVad(quiet_ms=600.0)  # a long thinking pause, still shorter than allowed
    session = _judged_session(ScriptedStt("I'd like to book an"), vad)
    await session.connect()
    await session.send_audio(b"start")
    await session.send_audio(b"pause")
    await asyncio.sleep(0.05)
    assert vad.limits == [HANGOVERS["auto"].incomplete_ms]
    assert session._utterances.empty()  # the turn goes on: nothing was sent to be answered
    await session.close()


async def test_without_a_judge_the_detector_alone_ends_the_turn() -> None:
    vad = JudgingVad(quiet_ms=1000.0)
    parts = CascadeParts(text=ScriptedText("Nine to five."), stt=ScriptedStt(), tts=WordVoice(),
                         vad=vad)
    session = CascadeSession(SessionSetup(model="m", instructions="i"), parts,
                             metrics=CascadeMetrics(), chunk_ms=100)
    await session.connect()
    await session.send_audio(b"start")
    await session.send_audio(b"pause")
    await asyncio.sleep(0.05)
    await session.close()
    assert vad.limits == []


class HeldStt(ScriptedStt):
    """The first transcription waits until released (a busy machine)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.release = asyncio.Event()

    async def transcribe(self, pcm16: bytes, rate: int) -> Transcription:
        if not self.heard:
            self.heard.append((len(pcm16), rate))
            await self.release.wait()
            return Transcription("What are", len(pcm16) / 2 / rate, "fake-stt")
        return await super().transcribe(pcm16, rate)


async def test_a_pause_that_came_while_an_older_guess_ran_is_judged_next() -> None:
    stt = HeldStt("What are your hours?")
    vad = JudgingVad(quiet_ms=250.0)
    session = _judged_session(stt, vad)
    await session.connect()
    await session.send_audio(b"start")
    await session.send_audio(b"false-pause")  # its guess is held
    await session.send_audio(b"pause")  # the latest pause waits for it
    await asyncio.sleep(0.01)
    assert [n for n, _ in stt.heard] == [1000]
    stt.release.set()
    events = await _collect(session, _responses_done(1))
    await session.close()
    assert [n for n, _ in stt.heard] == [1000, len(UTTERANCE)]
    assert [e.text for e in events if isinstance(e, Transcript)] == [
        "What are your hours?", "Nine to five."]
