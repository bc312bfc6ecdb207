"""Fuzzing the carrier side: random Twilio Media Streams frames, shapes and orders.

One fuzz case is a whole call, scripted by ``twilio_fuzz_scripts``: ``connected``,
some frames before ``start``, ``start`` with a good token, valid and broken frames,
a last valid ``media`` (the sentinel), and ``stop`` or a dropped socket. A fake
WebSocket plays the script as Twilio. The stream is the real ``TwilioCallAudio`` and the call the real
``CallSession``, joined to a model that records what reaches it; no network, so
thousands of calls run in seconds. A case passes when no exception escapes, the
call ends because the caller hung up, every valid audio frame (the sentinel last)
reached the model in order, every bad frame was counted under the kind the script
expected, and every frame the server sent back is one Twilio accepts
(checked by ``twilio_wire``, which is written from Twilio's documentation).

The property tests run a few thousand cases in CI; ``make fuzz`` runs this module
(``python -m agentplatform.testing.fuzz_carriers``) for at least 100,000 frames
and prints how many, how many crashes, and the malformed frames by kind.

The SIP carrier joins the same run: as many fuzzed datagrams through the SIP
parser and a tenth as many SDP offers through the answerer (``fuzz_sip``, cases
from ``sip_fuzz_datagrams``), counted on the same line.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from random import Random
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings

from agentplatform.agents.spec import AgentSpec
from agentplatform.bridge.call import CallDeps, CallSession
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.catalog import Catalog, load_catalog
from agentplatform.config import Settings
from agentplatform.models import OpenedModel
from agentplatform.models import open_model as open_model_for_real
from agentplatform.realtime.base import (
    AudioDelta, Capabilities, ModelEvent, ModelSession, SessionSetup, SpeechStarted, Transcript,
)
from agentplatform.records import EndReason, NullRecorder
from agentplatform.testing import sip_fuzz_datagrams as sip_fuzz
from agentplatform.testing import twilio_wire as twilio
from agentplatform.testing.twilio_fuzz_scripts import (
    AGENT, GREETING_MS, ITEM, SENTINEL, SID, TOKENS, Script, script_for, scripts, single_frames,
)


# Hypothesis profiles. CI: a fixed set of cases (derandomized, so a red build is
# always the code's doing), sized to run in seconds; ``make fuzz``: fresh cases.
_COMMON: dict[str, Any] = {"deadline": None, "database": None,
                           "suppress_health_check": list(HealthCheck)}
settings.register_profile("carriers-ci", derandomize=True, **_COMMON)
settings.register_profile("carriers-fuzz", report_multiple_bugs=True, **_COMMON)
CI_FRAMES = 1500  # parser cases
CI_CALLS = 200  # whole calls with labelled bad frames, ~20 frames each
CI_RANDOM_CALLS = 100  # whole calls with random JSON shapes among the frames


# ------------------------------------------------------------------ the fakes


class FakeTwilioSocket:
    """The Starlette WebSocket surface ``TwilioCallAudio`` uses, played from a script.

    After ``start`` it waits for the server's first mark (the greeting is queued),
    and after the sentinel for the server's ``clear`` (barge-in handled), so the
    order of events is the same on every run."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.index = 0
        self.sent: list[str] = []
        self.violations: list[str] = []
        self.closed: int | None = None
        self._greeted = asyncio.Event()
        self._cleared = asyncio.Event()

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        if self.index == self.script.start_index + 1:
            await _within(self._greeted.wait(), "the greeting never reached the carrier")
        if self.index == self.script.sentinel_index + 1:
            await _within(self._cleared.wait(), "the sentinel audio caused no barge-in")
        if self.closed is not None or self.index >= len(self.script.frames):
            return {"type": "websocket.disconnect", "code": 1000}
        frame = self.script.frames[self.index]
        self.index += 1
        if isinstance(frame, bytes):
            return {"type": "websocket.receive", "bytes": frame}
        return {"type": "websocket.receive", "text": frame}

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        try:
            message = twilio.read_server_frame(text)
        except twilio.ProtocolViolation as exc:
            self.violations.append(str(exc))
            return
        if message.stream_sid != SID:
            self.violations.append(f"31951 wrong streamSid {message.stream_sid!r}")
        if isinstance(message, twilio.ServerMark):
            self._greeted.set()
        elif isinstance(message, twilio.ServerClear):
            self._cleared.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code


async def _within(waiting: Any, what: str) -> None:
    try:
        async with asyncio.timeout(5):
            await waiting
    except TimeoutError:
        raise AssertionError(what) from None


class RecordingModel(ModelSession):
    """A model that speaks one answer, records what it is sent, and hears the
    caller start speaking when the sentinel audio arrives."""

    capabilities = Capabilities(input_rate=8000, output_rate=8000, g711=True)

    def __init__(self, setup: SessionSetup) -> None:
        super().__init__(setup)
        self.audio: list[bytes] = []
        self.texts: list[str] = []
        self.truncated: list[tuple[str, int]] = []
        self._events: asyncio.Queue[ModelEvent | None] = asyncio.Queue()

    async def connect(self) -> None:
        self._events.put_nowait(AudioDelta(ITEM, bytes([twilio.ULAW_SILENCE]) * GREETING_MS * 8))
        self._events.put_nowait(Transcript("assistant", "Hello, how can I help?", True, ITEM))

    async def send_audio(self, audio: bytes) -> None:
        self.audio.append(audio)
        if audio == SENTINEL:
            self._events.put_nowait(SpeechStarted())

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        self.texts.append(text)

    async def request_response(self, instructions: str | None = None) -> None:
        return None

    async def send_tool_result(self, call_id: str, name: str, output: str) -> None:
        return None

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.truncated.append((item_id, audio_end_ms))

    async def cancel_response(self) -> None:
        return None

    async def events(self) -> AsyncIterator[ModelEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> None:
        self._events.put_nowait(None)


class _Recorder(NullRecorder):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any] | None]] = []

    def event(self, call_id, kind, detail=None) -> None:  # type: ignore[no-untyped-def]
        self.events.append((kind, detail))


# ------------------------------------------------------------------ one case


@dataclass(slots=True)
class Outcome:
    frames: int
    end_reason: EndReason
    malformed: Counter[str]
    model: RecordingModel
    recorder: _Recorder
    socket: FakeTwilioSocket


_shared: dict[str, Any] = {}


def _deps(recorder: _Recorder, models: list[RecordingModel]) -> CallDeps:
    if not _shared:
        _shared["settings"] = Settings(_env_file=None, openai_api_key="sk-fuzz")
        _shared["catalog"] = load_catalog()
        # One client for every case (building one loads the CA store, 150 ms); the
        # fuzz agent has no tools, so it is never used.
        _shared["http"] = httpx.AsyncClient()
    catalog: Catalog = _shared["catalog"]

    def open_model(agent: AgentSpec, model: Any, deps: Any, **prompt: Any) -> OpenedModel:
        # The real choice (passthrough here) and setup, served by the recording model.
        real = open_model_for_real(agent, model, deps, **prompt)
        models.append(RecordingModel(real.session.setup))
        return OpenedModel(models[-1], real.audio_format)

    return CallDeps(settings=_shared["settings"], catalog=catalog, recorder=recorder,
                    http=_shared["http"], open_model=open_model)


AGENT_SPEC = AgentSpec(name=AGENT, model="openai/gpt-realtime", g711_passthrough=True)


async def run_call(script: Script) -> Outcome:
    """Play ``script`` as one call through the real stream and bridge."""
    socket = FakeTwilioSocket(script)
    stream = TwilioCallAudio(socket, tokens=TOKENS, start_timeout=5)  # type: ignore[arg-type]
    await stream.accept_and_start()
    recorder, models = _Recorder(), []
    reason = await CallSession(stream, AGENT_SPEC, _deps(recorder, models)).run()
    return Outcome(frames=socket.index, end_reason=reason, malformed=stream.malformed_counts,
                   model=models[0], recorder=recorder, socket=socket)


def check(script: Script, outcome: Outcome) -> None:
    """What every fuzzed call must satisfy (see the module docstring)."""
    assert outcome.end_reason is EndReason.CALLER_HUNG_UP, outcome.end_reason
    assert not outcome.socket.violations, outcome.socket.violations
    model = outcome.model
    if script.exact:
        assert dict(outcome.malformed) == dict(script.kinds)
        recorded = [d for kind, d in outcome.recorder.events if kind == "malformed_frames"]
        assert recorded == ([dict(script.kinds)] if script.kinds else [])
        assert model.audio == script.audio
        digits = [d["digit"] for kind, d in outcome.recorder.events if kind == "dtmf" and d]
        assert digits == script.digits
    else:
        assert model.audio[-1:] == [SENTINEL]
    assert len(model.truncated) == 1, model.truncated
    item, heard = model.truncated[0]
    assert item == ITEM and 0 <= heard <= GREETING_MS, model.truncated  # never more than sent


# ------------------------------------------------------------------ runner


@dataclass
class Tally:
    calls: int = 0
    frames: int = 0
    malformed: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.calls += 1
        self.frames += outcome.frames
        self.malformed.update(outcome.malformed)


TALLY = Tally()
_runner: asyncio.Runner | None = None


def play_and_return(script: Script) -> Outcome:
    """Run one case on a loop kept across cases (a new loop per case costs more
    than the case), count it, and check it."""
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
    outcome = _runner.run(run_call(script))
    TALLY.add(outcome)
    check(script, outcome)
    return outcome


def play(script: Script) -> None:
    """``play_and_return`` for ``@given`` (a property returns nothing)."""
    play_and_return(script)



# ------------------------------------------------------------------ SIP


@dataclass
class SipTally:
    datagrams: int = 0
    offers: int = 0
    crashes: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    refused_offers: Counter[int] = field(default_factory=Counter)


def fuzz_sip(datagrams: int, seed: int) -> SipTally:
    """``datagrams`` fuzzed SIP datagrams through the parser and a tenth as many SDP
    offers through the answerer (see ``sip_fuzz_datagrams``). Generation is seeded
    Python, not hypothesis, for speed; a crash prints the seed and the input."""
    rnd = Random(seed)
    tally = SipTally()
    for n in range(datagrams + datagrams // 10):
        is_offer = n >= datagrams
        data = sip_fuzz.offer(rnd) if is_offer else sip_fuzz.datagram(rnd)
        try:
            if is_offer:
                tally.offers += 1
                if (status := sip_fuzz.check_offer(data)) is not None:
                    tally.refused_offers[status] += 1
            else:
                tally.datagrams += 1
                if (kind := sip_fuzz.check_datagram(data)) is not None:
                    tally.malformed[str(kind)] += 1
        except Exception:  # noqa: BLE001 - counted and shown, then we go on
            tally.crashes += 1
            print(f"sip fuzz crash (seed {seed}, case {n}): {data[:400]!r}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
    return tally


def main(argv: list[str]) -> int:
    """``make fuzz``: cases until at least the asked number of frames, then as many
    SIP datagrams (or the second argument's number)."""
    target = int(argv[1]) if len(argv) > 1 else 100_000
    sip_target = int(argv[2]) if len(argv) > 2 else target
    began = time.monotonic()
    crashes = 0
    rounds = 0
    while TALLY.frames < target:
        rounds += 1
        cases = max(200, (target - TALLY.frames) // 18)
        for random_shapes in (False, True):
            test = settings(settings.get_profile("carriers-fuzz"), max_examples=cases // 2)(
                given(scripts(random_shapes))(play))
            try:
                test()
            except BaseException as exc:  # noqa: BLE001 - counted and shown, then we go on
                found = len(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else 1
                crashes += found
                traceback.print_exception(exc, file=sys.stderr)  # with the failing case
                if isinstance(exc, KeyboardInterrupt):
                    break
    seconds = time.monotonic() - began
    kinds = {str(kind): n for kind, n in sorted(TALLY.malformed.items())}
    sip_began, seed = time.monotonic(), secrets.randbits(32)
    sip = fuzz_sip(sip_target, seed)
    sip_kinds = dict(sorted(sip.malformed.items()))
    print(f"fuzz: {TALLY.frames} carrier messages in {TALLY.calls} calls, {crashes} crashes, "
          f"malformed by kind: {kinds} ({seconds:.0f} s); sip: {sip.datagrams} datagrams and "
          f"{sip.offers} SDP offers, {sip.crashes} crashes, malformed by kind: {sip_kinds}, "
          f"offers refused by status: {dict(sorted(sip.refused_offers.items()))} "
          f"(seed {seed}, {time.monotonic() - sip_began:.0f} s)")
    return 1 if crashes or sip.crashes else 0


__all__ = ["CI_CALLS", "CI_FRAMES", "CI_RANDOM_CALLS", "GREETING_MS", "SID", "Outcome", "Script",
           "SipTally", "check", "fuzz_sip", "main", "play", "play_and_return", "run_call", "script_for", "scripts",
           "single_frames"]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
