"""The local speech engines' capacity: calls past it hear the busy message at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from agentplatform.agents.spec import AgentSpec
from agentplatform.cascade import capacity as capacity_module
from agentplatform.cascade.capacity import CascadeCapacity, uses_local_engines
from agentplatform.cascade.metrics import CascadeMetrics
from agentplatform.cascade.session import CascadeParts, CascadeSession
from agentplatform.config import Settings
from agentplatform.limits.admission import Admission
from agentplatform.limits.drain import Drain
from agentplatform.limits.gate import CallGate
from agentplatform.limits.store import DatabaseLimitStore
from agentplatform.realtime.base import SessionSetup
from agentplatform.records import CallStart, EndReason

from .test_session import ScriptedStt, ScriptedText, ScriptedVad, WordVoice

OFFLINE = AgentSpec(name="front-desk", model="local/offline", voice_streaming=False)
CLOUD_CASCADE = AgentSpec.model_validate({
    "name": "cloud", "model": "openai/gpt-realtime", "voice_streaming": False,
    "cascade": {"stt": {"service": "openai"}, "tts": {"service": "openai"}}})
REALTIME = AgentSpec(name="rt", model="openai/gpt-realtime", voice_streaming=True)


def test_only_calls_whose_speech_runs_on_this_machine_count() -> None:
    assert uses_local_engines(OFFLINE)
    assert not uses_local_engines(CLOUD_CASCADE)
    assert not uses_local_engines(REALTIME)


def test_a_call_past_the_limit_is_refused_until_one_ends() -> None:
    capacity = CascadeCapacity(max_calls=2)
    capacity.opened()
    assert capacity.refusal(OFFLINE) is None
    capacity.opened()
    assert "2 calls at once" in (capacity.refusal(OFFLINE) or "")
    assert capacity.refusal(REALTIME) is None  # a realtime call needs no local engine
    capacity.closed()
    assert capacity.refusal(OFFLINE) is None


def test_no_setting_means_a_limit_per_core() -> None:
    assert CascadeCapacity().limit >= capacity_module.CALLS_PER_CORE


async def test_a_cascade_session_is_counted_from_connect_to_close() -> None:
    capacity = CascadeCapacity(max_calls=5)
    parts = CascadeParts(text=ScriptedText("Hi."), stt=ScriptedStt(), tts=WordVoice(),
                         vad=ScriptedVad())
    session = CascadeSession(SessionSetup(model="m", instructions="i"), parts,
                             metrics=CascadeMetrics(), capacity=capacity)
    await session.connect()
    assert capacity.live == 1
    await session.close()
    await session.close()  # twice: still counted out once
    assert capacity.live == 0


class _Recorder:
    def __init__(self) -> None:
        self.ended: list[tuple[str, EndReason, str]] = []

    def call_started(self, start: CallStart) -> None: ...

    def call_ended(self, call_id: str, reason: EndReason, detail: str = "") -> None:
        self.ended.append((call_id, reason, detail))


async def test_admission_answers_busy_when_the_local_engines_are_full(
        sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    full = CascadeCapacity(max_calls=1)
    full.opened()
    monkeypatch.setattr("agentplatform.limits.admission.CASCADE_CAPACITY", full)
    settings = Settings(_env_file=None, agents_dir=Path("agents"))  # type: ignore[call-arg]
    recorder = _Recorder()
    admission = Admission(CallGate(DatabaseLimitStore(sqlite_engine), sqlite_engine, settings),
                          Drain("draining", 1.0), recorder,
                          busy_message=settings.busy_message)

    said = await admission.at_arrival("twilio", "CA1", OFFLINE, "+15550001", "+15550100")
    assert said == settings.busy_message
    assert [(reason, "local speech engines" in detail) for _, reason, detail in recorder.ended] \
        == [(EndReason.BUSY, True)]
    # A realtime agent on the same server is still taken.
    assert await admission.at_arrival("twilio", "CA2", REALTIME, "+15550002", "+15550100") \
        is None
