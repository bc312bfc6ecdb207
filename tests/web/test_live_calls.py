"""The hang-up route refuses what it cannot do, saying why; the live part of a call's
page and the calls list's self-refresh part render on their own."""

from __future__ import annotations

from agentplatform.records import CallStart, EndReason

from .conftest import csrf_of, served


async def test_hang_up_refuses_an_unknown_an_ended_and_another_process_s_call(tmp_path):
    async with served(tmp_path) as client:
        writer = client.server.platform.writer
        writer.call_started(CallStart("e" * 32, "CAended", "front-desk", "openai/gpt-realtime",
                                      "twilio"))
        writer.call_ended("e" * 32, EndReason.CALLER_HUNG_UP, "caller hung up")
        # Open in the record, but no session of this process serves it.
        writer.call_started(CallStart("f" * 32, "CAother", "front-desk", "openai/gpt-realtime",
                                      "twilio"))
        writer.turn("f" * 32, "assistant", "Hello from elsewhere.")
        await writer.flush()
        token = csrf_of((await client.get("/")).text)
        unknown = await client.post("/calls/nope/hangup", data={"csrf_token": token})
        ended = await client.post(f"/calls/{'e' * 32}/hangup", data={"csrf_token": token})
        elsewhere = await client.post(f"/calls/{'f' * 32}/hangup", data={"csrf_token": token})
        forged = await client.post(f"/calls/{'f' * 32}/hangup", data={"csrf_token": "x"})
        live_part = await client.get(f"/calls/{'f' * 32}/live")
        list_part = await client.get("/calls", params={"part": "list"})
        bad_part = await client.get("/calls", params={"part": "charts"})
    assert unknown.status_code == 404
    assert ended.status_code == 409 and "already ended" in ended.text
    assert elsewhere.status_code == 409 and "another server process" in elsewhere.text
    assert forged.status_code == 403
    assert "Hello from elsewhere." in live_part.text and "data-final" not in live_part.text
    assert 'id="calls"' in list_part.text and "<nav" not in list_part.text
    assert "Daily cost" not in list_part.text
    assert bad_part.status_code == 400
