"""No input: a caller who stays silent after the agent has spoken is asked whether they
are still there, and after ``idle_prompts_max`` unanswered prompts the call ends.

The watch is a single timer on the event loop (``call_later``), armed when the
agent's audio has finished playing, disarmed the moment anyone speaks again —
the agent (its next audio) or the caller (speech, a key press). A tool at work
pauses it: the caller is waiting on us then, not silent. Everything here is O(1)
and never awaits, so the bridge calls it from the audio path. The bridge decides
what a prompt or the goodbye says; this module only decides when.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class IdleWatch:
    """When to prompt a silent caller, and when to give up on them."""

    def __init__(self, seconds: float | None, max_prompts: int, *,
                 prompt: Callable[[int], None], give_up: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.max_prompts = max_prompts
        self.prompts = 0  # prompts since the caller last spoke
        self._prompt = prompt
        self._give_up = give_up
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._remaining: float | None = None  # set while paused with a countdown under way
        self._deadline = 0.0
        self._tools = 0
        self._stopped = seconds is None

    def agent_finished(self) -> None:
        """The agent's audio has all played: the caller's turn, and the countdown starts."""
        if self._stopped:
            return
        if self._tools:
            self._remaining = self.seconds
            return
        self._arm(self.seconds)

    def agent_speaking(self) -> None:
        if self._timer is not None or self._remaining is not None:
            self._disarm()

    def caller_active(self) -> None:
        """The caller spoke or pressed a key: they are there."""
        self.prompts = 0
        if self._timer is not None or self._remaining is not None:
            self._disarm()

    def tool_started(self) -> None:
        self._tools += 1
        if self._timer is not None:
            self._remaining = max(0.0, self._deadline - self._clock())
            self._timer.cancel()
            self._timer = None

    def tool_finished(self) -> None:
        self._tools = max(0, self._tools - 1)
        if not self._tools and self._remaining is not None and not self._stopped:
            remaining, self._remaining = self._remaining, None
            self._arm(remaining)

    def stop(self) -> None:
        self._stopped = True
        self._disarm()

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self._clock() + seconds
        self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def _disarm(self) -> None:
        self._remaining = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._stopped:
            return
        if self.prompts < self.max_prompts:
            self.prompts += 1
            self._prompt(self.prompts)
        else:
            self._stopped = True
            self._give_up()
