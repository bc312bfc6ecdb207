"""No input: when the silent caller is prompted, when the call gives up on them."""

from __future__ import annotations

import asyncio

from agentplatform.bridge.idle import IdleWatch

TICK = 0.05  # the idle timeout in these tests (s)


class _Calls:
    def __init__(self) -> None:
        self.prompts: list[int] = []
        self.gave_up = 0

    def watch(self, seconds: float | None = TICK, max_prompts: int = 2) -> IdleWatch:
        return IdleWatch(seconds, max_prompts, prompt=self.prompts.append,
                         give_up=self._give_up)

    def _give_up(self) -> None:
        self.gave_up += 1


async def _silence(periods: float) -> None:
    await asyncio.sleep(TICK * periods)


async def test_a_silent_caller_is_prompted_max_times_then_the_watch_gives_up():
    calls = _Calls()
    watch = calls.watch(max_prompts=2)
    watch.agent_finished()
    await _silence(1.6)
    assert calls.prompts == [1] and not watch.armed  # waits for the prompt to be spoken
    watch.agent_speaking()
    watch.agent_finished()
    await _silence(1.6)
    assert calls.prompts == [1, 2]
    watch.agent_finished()
    await _silence(1.6)
    assert calls.gave_up == 1 and calls.prompts == [1, 2]
    watch.agent_finished()  # the goodbye played: nothing more
    await _silence(1.6)
    assert calls.gave_up == 1 and calls.prompts == [1, 2]


async def test_the_countdown_starts_only_when_the_agent_has_finished_speaking():
    calls = _Calls()
    calls.watch()
    await _silence(2)
    assert calls.prompts == []


async def test_caller_speech_stops_the_countdown_and_starts_the_prompts_afresh():
    calls = _Calls()
    watch = calls.watch(max_prompts=1)
    watch.agent_finished()
    await _silence(1.6)
    assert calls.prompts == [1]
    watch.caller_active()  # "yes, I'm here"
    watch.agent_finished()
    await _silence(0.5)
    watch.caller_active()  # talking again before the timeout
    await _silence(1.6)
    assert calls.prompts == [1] and calls.gave_up == 0
    watch.agent_finished()
    await _silence(1.6)
    assert calls.prompts == [1, 1]  # counted from one again, not given up


async def test_the_agent_speaking_again_stops_the_countdown():
    calls = _Calls()
    watch = calls.watch()
    watch.agent_finished()
    watch.agent_speaking()
    await _silence(2)
    assert calls.prompts == []


async def test_the_countdown_pauses_while_a_tool_runs_and_resumes_after():
    calls = _Calls()
    watch = calls.watch(seconds=TICK * 2)
    watch.agent_finished()
    await _silence(1)
    watch.tool_started()
    await _silence(3)  # far past the timeout: the caller is waiting on the tool
    assert calls.prompts == []
    watch.tool_finished()
    await _silence(0.5)
    assert calls.prompts == []  # about one period was left
    await _silence(1.2)
    assert calls.prompts == [1]


async def test_the_agent_finishing_during_a_tool_waits_for_the_tool():
    calls = _Calls()
    watch = calls.watch()
    watch.tool_started()
    watch.agent_finished()
    await _silence(2)
    assert calls.prompts == []
    watch.tool_finished()
    await _silence(1.6)
    assert calls.prompts == [1]


async def test_off_by_default_and_after_stop():
    calls = _Calls()
    off = calls.watch(seconds=None)
    off.agent_finished()
    stopped = calls.watch()
    stopped.agent_finished()
    stopped.stop()
    await _silence(2)
    assert calls.prompts == [] and calls.gave_up == 0
