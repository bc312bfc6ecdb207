"""Every log line of a call names it, in whatever task or thread logs it."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agentplatform.observability.logging import (
    CallContextFilter,
    JsonFormatter,
    bind_call,
    set_call_id,
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(CallContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected():
    handler = _Collect()
    log = logging.getLogger("test.calls")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield log, handler
    log.removeHandler(handler)


async def test_lines_from_spawned_tasks_and_worker_threads_carry_their_own_call_id(
    collected,
) -> None:
    log, handler = collected

    async def one_call(carrier_id: str, platform_id: str) -> None:
        with bind_call(carrier_call_id=carrier_id, agent="desk"):
            log.info("webhook")
            set_call_id(platform_id)

            async def model_loop() -> None:
                await asyncio.sleep(0)
                log.info("model event")

            await asyncio.create_task(model_loop())
            await asyncio.to_thread(log.info, "from a worker thread")

    await asyncio.gather(one_call("CA1", "call-1"), one_call("CA2", "call-2"))
    log.info("outside any call")
    by_message: dict[str, list[str]] = {}
    for r in handler.records:
        by_message.setdefault(r.getMessage(), []).append(r.call_id)  # type: ignore[attr-defined]
    assert sorted(by_message["webhook"]) == ["CA1", "CA2"]  # the carrier id until minted
    assert sorted(by_message["model event"]) == ["call-1", "call-2"]
    assert sorted(by_message["from a worker thread"]) == ["call-1", "call-2"]
    assert by_message["outside any call"] == ["-"]


def test_json_lines_hold_the_call_ids_and_the_message(collected) -> None:
    log, handler = collected
    with bind_call("abc123", carrier_call_id="CA9", agent="desk"):
        log.warning("model %s unavailable", "openai/gpt-realtime")
    entry = json.loads(JsonFormatter().format(handler.records[-1]))
    assert entry["message"] == "model openai/gpt-realtime unavailable"
    assert (entry["call_id"], entry["carrier_call_id"], entry["agent"]) == ("abc123", "CA9", "desk")
    assert entry["level"] == "warning" and entry["logger"] == "test.calls"
