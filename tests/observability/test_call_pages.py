"""One simulated call through the in-process server, then what operators see of it:
per-turn timing in the record, the calls list, the call page, and ``/metrics``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agentplatform.audio.frames import tone
from agentplatform.storage import queries
from agentplatform.storage.database import make_engine
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.stack import local_server, simulated_settings
from agentplatform.testing.twilio_caller import TwilioCaller

NUMBER = "+15555550400"
AGENT = f"""\
name: front-desk
prompt: You answer the phone.
greeting: Hello there.
phone_numbers: ["{NUMBER}"]
limits:
  max_concurrent_calls: 1
"""


async def test_a_call_shows_its_turn_latency_cost_and_refusal_on_the_pages_and_metrics(
    tmp_path: Path,
) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "front-desk.yaml").write_text(AGENT)
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=600, caller_texts=["Are you open?"]) as sim:
        settings = simulated_settings(agents_dir=tmp_path / "agents", database_url=database_url,
                                      openai_url=sim.url)
        async with local_server(settings) as server:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
                busy = TwilioCaller(server.base_url, to=NUMBER, from_="+15550009999")
                assert not await busy.dial()  # one line only: refused, recorded
                await caller.say(tone(440, 1000, 8000, amplitude=0.4))
                await caller.wait_for_audio(5)
                await caller.wait_for_silence(300, 10)
            async with asyncio.timeout(5):
                while True:
                    await server.platform.writer.flush()
                    calls = queries.list_calls(make_engine(database_url))
                    if all(c.end_reason for c in calls) and len(calls) == 2:
                        break
                    await asyncio.sleep(0.05)
            answered = next(c for c in calls if c.end_reason == "caller_hung_up")
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                listing = (await http.get("/calls")).text
                refused_only = (await http.get("/calls", params={"reason": "busy"})).text
                page = (await http.get(f"/calls/{answered.id}")).text
                bad_day = await http.get("/calls", params={"since": "yesterday"})
                metrics = (await http.get("/metrics")).text

    detail = queries.get_call(make_engine(database_url), answered.id)
    assert detail is not None
    answer = [t for t in detail.turns if t.role == "assistant"][-1]
    assert answer.latency_ms is not None and answer.model_ms is not None
    assert 0 < answer.model_ms <= answer.latency_ms
    assert answer.tool_ms == 0.0
    assert detail.model_connected_at is not None and detail.audio_seconds > 0

    assert answered.id in listing and "refused" in listing and "front-desk" in listing
    assert 'cost-chart" data-agent="front-desk"' in listing
    assert answered.id not in refused_only and "busy" in refused_only
    assert '<svg class="chart"' in page and "Response latency" in page
    assert "audio output" in page and "prices as of 2026-" in page
    assert f"{answer.latency_ms:.0f} ms" in page
    assert bad_day.status_code == 400 and "YYYY-MM-DD" in bad_day.text

    samples = {s.name: s.value for f in text_string_to_metric_families(metrics)
               for s in f.samples if not s.labels or "reason" in s.labels}
    assert samples["agentplatform_turn_latency_seconds_count"] >= 1
    assert samples["agentplatform_model_first_audio_seconds_count"] >= 1
    assert samples["agentplatform_calls_refused_total"] == 1
