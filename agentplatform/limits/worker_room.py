"""Which workers have room for one more call: a byte each, shared by a supervisor's workers.

Under ``serve --workers N`` a call is carried by whichever worker accepts its stream,
not by the one that answered its webhook. So a worker past its headroom
(``limits/headroom.py``) writes that here, and every worker can tell whether a sibling
still has room. Two uses follow:

- a worker whose streams can be steered (they arrive on the media listener's shared
  socket, ``MEDIA_LISTEN``) stops accepting new streams while it is full and a sibling
  is not, so the kernel hands the next stream to a worker that accepts; and its webhook
  takes the call instead of refusing it, since the call will land elsewhere;
- when no worker has room, every worker accepts and refuses with the busy message, as
  a single process does.

The board is an anonymous shared-memory file (``memfd``) that the supervisor creates
and hands down like its listening sockets; nothing is left behind when they exit.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping

ROOM_FD_ENV = "AGENTPLATFORM_ROOM_FD"  # the board's descriptor, in a worker

UNKNOWN = 0  # not started yet, or restarting: counts as no room
ROOM = 1
FULL = 2


class RoomBoard:
    """One byte per worker: ``UNKNOWN``, ``ROOM`` or ``FULL``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        if self.size < 1:
            raise ValueError("a room board holds at least one worker")
        self._map = mmap.mmap(fd, self.size)

    @classmethod
    def create(cls, workers: int) -> RoomBoard:
        """The supervisor's board for ``workers`` workers, its descriptor inheritable."""
        fd = os.memfd_create("agentplatform-worker-room", 0)
        os.ftruncate(fd, max(1, workers))
        os.set_inheritable(fd, True)
        return cls(fd)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> RoomBoard | None:
        """A worker's view of its supervisor's board; ``None`` when run alone."""
        value = environ.get(ROOM_FD_ENV, "").strip()
        return cls(int(value)) if value else None

    def mark(self, index: int, has_room: bool) -> None:
        self._map[index] = ROOM if has_room else FULL

    def forget(self, index: int) -> None:
        """A worker that exited: no room there until it says otherwise."""
        self._map[index] = UNKNOWN

    def state(self, index: int) -> int:
        return self._map[index]

    def others_with_room(self, index: int) -> int:
        """How many workers other than ``index`` said they have room."""
        return sum(1 for i in range(self.size) if i != index and self._map[i] == ROOM)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
