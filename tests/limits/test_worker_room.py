"""Under ``serve --workers``: a full worker leaves the next call to a sibling with room."""

from __future__ import annotations

import os
import subprocess
import sys

from agentplatform.limits.headroom import Headroom, Limits
from agentplatform.limits.worker_room import FULL, ROOM, UNKNOWN, RoomBoard

ONE_CALL_EACH = Limits(max_lag_ms=0, max_cpu=0, max_calls=1)


def _worker(board: RoomBoard, index: int, live: list[int]) -> Headroom:
    headroom = Headroom(ONE_CALL_EACH, live_calls=lambda: live[0], board=board, index=index)
    headroom.steerable = True
    return headroom


def test_the_board_is_shared_with_a_worker_process_through_its_descriptor() -> None:
    board = RoomBoard.create(3)
    try:
        code = ("import os; from agentplatform.limits.worker_room import RoomBoard; "
                "b = RoomBoard.from_environment(os.environ); b.mark(2, False); b.mark(1, True)")
        env = {**os.environ, "AGENTPLATFORM_ROOM_FD": str(board.fd)}
        subprocess.run([sys.executable, "-c", code], env=env, pass_fds=[board.fd], check=True)
        assert [board.state(i) for i in range(3)] == [UNKNOWN, ROOM, FULL]
        assert board.others_with_room(0) == 1
        assert board.others_with_room(1) == 0
    finally:
        board.close()


def test_a_full_worker_stops_accepting_streams_and_takes_the_call_for_a_sibling_with_room() -> None:
    board = RoomBoard.create(2)
    full, free = [1], [0]
    busy_worker, idle_worker = _worker(board, 0, full), _worker(board, 1, free)
    accepting: list[bool] = []
    busy_worker.watch(accepting.append)
    idle_worker.publish()
    busy_worker.publish()
    assert accepting == [False] and not busy_worker.accepting
    assert busy_worker.admit() is None  # its stream will land on the sibling
    assert (busy_worker.steered, busy_worker.shed) == (1, 0)

    free[0] = 1  # the sibling fills up too: everybody accepts, and refuses
    idle_worker.publish()
    busy_worker.publish()
    assert accepting == [False, True]
    assert busy_worker.admit() is not None
    assert busy_worker.shed == 1
    board.close()


def test_without_a_way_to_steer_streams_a_full_worker_refuses_as_a_single_process_does() -> None:
    board = RoomBoard.create(2)
    busy_worker = Headroom(ONE_CALL_EACH, live_calls=lambda: 1, board=board, index=0)
    idle_worker = _worker(board, 1, [0])
    idle_worker.publish()
    busy_worker.publish()
    assert busy_worker.accepting
    assert busy_worker.admit() is not None
    assert busy_worker.steered == 0
    board.close()


def test_a_worker_that_exited_counts_as_having_no_room() -> None:
    board = RoomBoard.create(2)
    busy_worker, idle_worker = _worker(board, 0, [1]), _worker(board, 1, [0])
    idle_worker.publish()
    board.forget(1)  # the supervisor saw it exit
    busy_worker.publish()
    assert busy_worker.accepting
    assert busy_worker.admit() is not None
    board.close()
