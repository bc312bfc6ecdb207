"""Work that grows with the data behind a page (a long call's transcript and chart,
two weeks of cost charts, a JSON dump of a call, a metrics scrape, a password check)
runs in a worker thread: the event loop carries the live calls' audio."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session

from agentplatform.app import create_app
from agentplatform.storage.models import Call, CallDetail, CallPublic, Turn, utcnow
from agentplatform.web import admin, passwords
from agentplatform.web.templating import templates

from .conftest import settings_for

CALL_ID = "c" * 32


class Threads:
    """Which threads the wrapped functions ran on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.get_ident()
        self.seen: dict[str, set[int]] = {}
        self._monkeypatch = monkeypatch

    def watch(self, owner: object, name: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            self.seen.setdefault(name, set()).add(threading.get_ident())
            return original(*args, **kwargs)

        self._monkeypatch.setattr(owner, name, wrapped)

    def on_the_loop(self) -> list[str]:
        return sorted(name for name, threads in self.seen.items() if self.loop_thread in threads)


@contextlib.asynccontextmanager
async def app_with_a_long_call(tmp_path, **overrides):
    app = create_app(settings_for(tmp_path, **overrides))
    async with app.router.lifespan_context(app):
        started = utcnow() - timedelta(minutes=30)
        with Session(app.state.engine) as db:
            db.add(Call(id=CALL_ID, carrier_call_id="CA1", agent="front-desk",
                        model="openai/gpt-realtime", requested_model="openai/gpt-realtime",
                        started_at=started, ended_at=started + timedelta(minutes=29),
                        end_reason="caller_hung_up", duration_seconds=1740.0))
            db.add_all(Turn(call_id=CALL_ID, seq=n, role="assistant" if n % 2 else "user",
                            text=f"turn {n} " * 20, latency_ms=400.0 + n % 300)
                       for n in range(1, 1201))
            db.commit()
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000",
                                     follow_redirects=False) as client:
            yield client


async def test_call_pages_are_charted_and_rendered_off_the_event_loop(tmp_path, monkeypatch):
    threads = Threads(monkeypatch)
    threads.watch(admin, "cost_charts")
    threads.watch(admin, "latency_chart")
    threads.watch(admin, "turn_bars")
    threads.watch(templates, "TemplateResponse")
    async with app_with_a_long_call(tmp_path) as client:
        listing = await client.get("/calls")
        assert listing.status_code == 200 and CALL_ID in listing.text
        page = await client.get(f"/calls/{CALL_ID}")
        assert page.status_code == 200 and "turn 1200" in page.text
    assert set(threads.seen) == {"cost_charts", "latency_chart", "turn_bars", "TemplateResponse"}
    assert threads.on_the_loop() == []


async def test_calls_api_answers_are_serialized_off_the_event_loop(tmp_path, monkeypatch):
    threads = Threads(monkeypatch)
    threads.watch(CallDetail, "model_dump")
    threads.watch(CallPublic, "model_dump")
    async with app_with_a_long_call(tmp_path) as client:
        one = await client.get(f"/api/calls/{CALL_ID}")
        assert one.status_code == 200 and len(one.json()["turns"]) == 1200
        listing = await client.get("/api/calls")
        assert [c["id"] for c in listing.json()["calls"]] == [CALL_ID]
    assert threads.seen and threads.on_the_loop() == []


async def test_a_metrics_scrape_is_rendered_off_the_event_loop(tmp_path, monkeypatch):
    threads = Threads(monkeypatch)
    async with app_with_a_long_call(tmp_path) as client:
        observer = client._transport.app.state.observer  # type: ignore[attr-defined]
        threads.watch(observer, "exposition")
        assert (await client.get("/metrics")).status_code == 200
    assert threads.seen and threads.on_the_loop() == []


async def test_the_password_check_runs_on_its_own_threads(tmp_path, monkeypatch):
    threads = Threads(monkeypatch)
    threads.watch(passwords, "verify_password")
    async with app_with_a_long_call(tmp_path, admin_password_hash=passwords.hash_password(
            "pw", n=2**10), allowed_hosts="admin.example") as client:
        form = await client.get("http://admin.example/login")
        token = form.text.split('name="login_token" value="')[1].split('"')[0]
        ok = await client.post("http://admin.example/login", data={
            "user": "admin", "password": "pw", "login_token": token, "next": "/"})
        assert ok.status_code == 303
    assert threads.seen and threads.on_the_loop() == []
    names = {t.name for t in threading.enumerate() if t.ident in threads.seen["verify_password"]}
    assert names and all(name.startswith("password-check") for name in names)
