"""How many calls the local speech engines serve at once, and the refusal beyond that.

The offline cascade is CPU-bound: every caller's turn needs a transcription and a
synthesis on the same two cores, queued on one STT and one TTS thread
(``speech/workers.py``). Past a point each new call makes every call's answers late
together — the issue measured 1.7–3.2 s per answer on a busy machine. So a process
takes a call that needs the local engines only while fewer than ``max_calls`` such
calls are live; the next caller hears the busy message at once (``limits/
admission.py`` asks here), which beats an agent that answers everyone too slowly.

``max_calls`` is ``CASCADE_MAX_CALLS``; 0 means ``CALLS_PER_CORE`` per core, the
figure ``make bench`` measured (callers asking short questions back to back with a
caller-felt p90 under 1 s). Calls whose cascade runs on cloud engines, and realtime
calls, are not counted: they do not use these cores for speech.
"""

from __future__ import annotations

import os
import threading

from agentplatform.agents.spec import AgentSpec

# Concurrent offline cascade calls per core that kept the caller-felt p90 ≤ 1 s in
# make bench (6 on 2 cores busy with other work: p90 733 ms; 8 calls: p90 1.3 s).
CALLS_PER_CORE = 3
LOCAL_SERVICE = "local"  # the catalog's name for the engines that run in this process


def uses_local_engines(agent: AgentSpec) -> bool:
    """Whether calls to ``agent`` run speech on this machine's cores: a cascade agent
    (voice streaming off, or the local provider) whose STT or TTS is the local one."""
    cascade = not agent.voice_streaming or agent.model.startswith(f"{LOCAL_SERVICE}/")
    speech = {agent.cascade.stt.service, agent.cascade.tts.service}
    return cascade and LOCAL_SERVICE in speech


class CascadeCapacity:
    """The live count of calls on the local engines, against a limit; one per process."""

    def __init__(self, max_calls: int = 0) -> None:
        self._lock = threading.Lock()
        self._live = 0
        self.max_calls = max_calls

    @property
    def limit(self) -> int:
        return self.max_calls or CALLS_PER_CORE * (os.cpu_count() or 1)

    @property
    def live(self) -> int:
        return self._live

    def refusal(self, agent: AgentSpec) -> str | None:
        """Why a new call to ``agent`` cannot be served in time, or None to take it."""
        if not uses_local_engines(agent):
            return None
        with self._lock:
            if self._live < self.limit:
                return None
            return (f"the local speech engines serve {self.limit} calls at once "
                    f"and {self._live} are live")

    def opened(self) -> None:
        with self._lock:
            self._live += 1

    def closed(self) -> None:
        with self._lock:
            self._live = max(0, self._live - 1)


CASCADE_CAPACITY = CascadeCapacity()
