"""``/readyz``: what a load balancer reads to send new calls to a server with room."""

from __future__ import annotations

from pathlib import Path

from agentplatform.limits.headroom import Headroom, Limits

from .conftest import remote


async def test_readyz_says_ready_then_unready_when_full_then_when_draining(
        tmp_path: Path, agent_file: Path) -> None:
    async with remote(tmp_path) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"

        admission = client._transport.app.state.platform.admission  # type: ignore[attr-defined]
        live = [1]
        admission.headroom = Headroom(Limits(max_lag_ms=0, max_cpu=0, max_calls=1),
                                      live_calls=lambda: live[0])
        full = await client.get("/readyz", headers={"Host": "10.0.0.9"})  # probed by address
        assert full.status_code == 503
        assert full.json()["reason"].startswith("overloaded: process at its cap")
        assert admission.headroom.shed == 0  # a probe refuses nobody

        live[0] = 0
        assert (await client.get("/readyz")).status_code == 200
        admission.drain.begin()
        draining = await client.get("/readyz")
        assert draining.status_code == 503 and draining.json()["reason"] == "draining"
