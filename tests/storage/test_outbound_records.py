"""An outbound call's record: written queued before the carrier dials, moved on to
ringing with the carrier's id, taken over by the bridge when answered, closed ended."""

from __future__ import annotations

from sqlalchemy import Engine

from agentplatform.records import CallStart, EndReason
from agentplatform.storage import queries
from agentplatform.storage.writer import CallWriter


def _start(**overrides) -> CallStart:
    values = dict(call_id="c" * 32, carrier_call_id="", agent="reminders",
                  model="openai/gpt-realtime", carrier="twilio", from_number="+15555550100",
                  to_number="+15555550142", parameters={"name": "Ada"}, outbound=True)
    values.update(overrides)
    return CallStart(**values)  # type: ignore[arg-type]


async def _get(writer: CallWriter, engine: Engine):
    await writer.flush()
    return queries.get_call(engine, "c" * 32)


async def test_an_outbound_call_goes_queued_ringing_in_progress_ended_on_one_row(
        writer: CallWriter, engine: Engine) -> None:
    writer.call_queued(_start(), "leave_message")
    queued = await _get(writer, engine)
    writer.call_status("c" * 32, "ringing", "CA123")
    ringing = await _get(writer, engine)
    writer.call_started(_start(carrier_call_id="CA123"))  # the bridge, once answered
    writer.call_status("c" * 32, "ringing", "")  # a late ringing callback changes nothing
    talking = await _get(writer, engine)
    writer.call_ended("c" * 32, EndReason.VOICEMAIL_LEFT, "answered by machine_end_beep")
    ended = await _get(writer, engine)
    assert (queued.status, queued.direction, queued.machine_detection) == (
        "queued", "outbound", "leave_message")
    assert (ringing.status, ringing.carrier_call_id) == ("ringing", "CA123")
    assert talking.status == "in_progress"
    assert (ended.status, ended.end_reason) == ("ended", "voicemail_left")
    assert len(queries.list_calls(engine)) == 1


async def test_an_inbound_call_starts_in_progress_and_a_closed_call_keeps_ended(
        writer: CallWriter, engine: Engine) -> None:
    writer.call_started(_start(outbound=False, carrier_call_id="CA9"))
    inbound = await _get(writer, engine)
    writer.call_ended("c" * 32, EndReason.CALLER_HUNG_UP)
    writer.call_status("c" * 32, "ringing", "CA10")
    closed = await _get(writer, engine)
    assert (inbound.direction, inbound.status) == ("inbound", "in_progress")
    assert (closed.status, closed.carrier_call_id) == ("ended", "CA9")
